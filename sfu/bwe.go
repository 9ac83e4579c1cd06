package sfu

import (
	"sync"
	"sync/atomic"

	"github.com/starling-rtc/starling/internal/clock"
)

// Starling's send-side bandwidth estimator, one per subscriber connection,
// after libwebrtc's GoogCC: a delay-based part (inter-group delay
// variation, a trendline over 20 groups, an adaptive threshold and AIMD
// rate control capped by the acknowledged rate), a loss-based cap, and
// probe clusters whose measured rate lifts the estimate at once.
//
// It replaces pion's GCC (docs/congestion.md has the measurements):
//   - send times are those of the socket write (sendHistory.stamp, called
//     by the batched socket after sendmmsg), not of a write into one of
//     Starling's queues: the server's own CPU load used to read as a
//     growing network queue, and paused viewers on loopback;
//   - an application-limited sender (an SFU forwards what arrives) keeps its
//     estimate: it rises only up to 1.5× what was acknowledged, and falls
//     only on overuse or loss, as libwebrtc's does;
//   - a probe's result counts at once, so recovery after a bottleneck takes
//     one probe, not pion's climb of ~8%/s;
//   - nothing is allocated per packet: feedback is decoded into reused
//     buffers and the history is a fixed ring.

// Estimator bounds, bits/s.
const (
	bweMin = 100_000
	bweMax = 50_000_000
)

// bweHistoryLen is how many sent packets the estimator remembers: feedback
// comes every ~100 ms, and 2,048 packets is over a second at 15 Mbit/s.
const bweHistoryLen = 2048

// sentRecord is one packet sent: meta packs the transport-wide sequence
// number (bits 0-15), the size on the wire (16-31), the probe cluster
// (32-47) and a valid bit (48); sent packs the sequence number again (bits
// 0-15) with the low 48 bits of when it left the socket, unix µs (16-63).
// Each word names its packet, so recording and stamping are one store each
// and need no read: a send time is trusted only when both words name the
// packet asked for (a slot is reused every bweHistoryLen packets).
type sentRecord struct {
	meta atomic.Uint64
	sent atomic.Uint64
}

// sendHistory is written by the down tracks' writers (record) and the
// socket's flusher (stamp), read by the feedback handler: every field is
// atomic, and a record is trusted only when its sequence numbers match.
type sendHistory struct {
	recs [bweHistoryLen]sentRecord
}

func (h *sendHistory) record(seq uint16, size int, cluster uint16) {
	h.recs[seq%bweHistoryLen].meta.Store(uint64(seq) | uint64(min(size, 0xffff))<<16 | uint64(cluster)<<32 | 1<<48)
}

// stamp records when packet seq left the socket (unix µs).
func (h *sendHistory) stamp(seq uint16, at int64) {
	h.recs[seq%bweHistoryLen].sent.Store(uint64(at)<<16 | uint64(seq))
}

// sentMask keeps the 48 bits of a send time that a record holds.
const sentMask = 1<<48 - 1

// sentMaxAge is how old a send time may be for feedback to use it. The
// slot of a packet recorded but not yet stamped (its feedback read before
// the flusher stored the time) still holds the stamp of the packet with
// the same sequence number 65,536 packets earlier: minutes ago at a video
// rate, and refused as too old (the history itself covers 2,048 packets,
// a few seconds at most).
const sentMaxAge = 10_000_000

// get returns a sent packet's size, cluster and send time; ok=false if it
// was forgotten or not stamped. now (unix µs, the feedback's reception)
// restores the send time's upper bits: it is the latest time with the
// recorded low 48 bits up to a second after now (the flusher may read its
// clock a little after the feedback's reader did).
func (h *sendHistory) get(seq uint16, now int64) (size int, cluster uint16, sent int64, ok bool) {
	r := &h.recs[seq%bweHistoryLen]
	m := r.meta.Load()
	if m&(1<<48) == 0 || uint16(m) != seq {
		return 0, 0, 0, false
	}
	st := r.sent.Load()
	if uint16(st) != seq || st>>16 == 0 {
		return 0, 0, 0, false
	}
	ref := now + 1_000_000
	sent = ref - (ref-int64(st>>16))&sentMask
	if ref-sent > sentMaxAge {
		return 0, 0, 0, false
	}
	return int(m >> 16 & 0xffff), uint16(m >> 32), sent, true
}

// bwe is one connection's estimator. Feedback may come on several
// goroutines (one RTCP reader per sender): mu serialises it. target is
// read lock-free by the allocator.
type bwe struct {
	hist   sendHistory
	target atomic.Uint64 // bits/s
	// changed is called (on the feedback goroutine, with mu held: it
	// must not block) when the target falls 15% below what it last
	// reported, or a probe raised it.
	changed  atomic.Pointer[func()]
	reported uint64
	raises   atomic.Uint64 // probes that raised the target (Subscriber.ProbeRaises)
	counts   *bweCounts    // the engine's (BWECounters), beside the process's counters

	mu      sync.Mutex
	fb      twccFeedback
	refBase int64 // unwrapping of the 24-bit reference time, µs
	lastRef int64
	haveRef bool
	delay   trendline
	aimd    aimd
	acked   ackedRate
	loss    lossCap
	probes  probeClusters
	// Until then (µs), a delay-based overuse verdict does not lower the
	// target that a probe just raised (see update).
	graceUntil int64
	// Feedback timeout (bwetimeout.go): when the last feedback came (µs)
	// and the sequence number after the highest it reported; when the
	// estimate was last cut for silence; and, while a silence lasts, what
	// the first cut took away.
	haveFb   bool
	lastFb   int64
	fbNext   uint16
	lastCut  int64
	cutFrom  uint64
	cutCap   float64
	cutAt    int64
	cutLossy [2]int64
	// reportDelay is the smoothed time from a packet's send to its
	// report (µs): the round trip and the report interval (bwetimeout.go).
	reportDelay int64
}

// probeGrace is how long a probe's result stands against the delay-based
// detector: long enough for the allocator to raise a layer, its keyframe to
// arrive, and the acknowledged rate to follow (one 500 ms window).
const probeGrace = 2_000_000

func newBWE(initial int) *bwe {
	if initial <= 0 {
		initial = 3_000_000
	}
	b := &bwe{counts: &bweCounts{}}
	b.aimd.rate = float64(initial)
	b.aimd.avgMax = -1
	b.delay.threshold = 12.5
	b.delay.overuseTime = -1
	b.target.Store(uint64(initial))
	b.reported = uint64(initial)
	return b
}

// lossLimited reports whether more than 10% of the packets were lost in
// two measurements (of at least 300 ms each) within the last 3 s: one
// lossy window can be a receiver's hiccup, or retransmissions its client
// read late and reported lost.
func (b *bwe) lossLimited() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	l := &b.loss
	return l.lossyPrev != 0 && clock.Micros()-l.lossyPrev < 3_000_000
}

// estimate is the current estimate in bits/s.
func (b *bwe) estimate() uint64 { return b.target.Load() }

// unwrapRef turns a feedback's 24-bit reference time into a monotonic µs.
func (b *bwe) unwrapRef(ref int64) int64 {
	const span = (1 << 24) * 64_000
	if b.haveRef {
		switch d := ref - b.lastRef; {
		case d < -span/2:
			b.refBase += span
		case d > span/2:
			b.refBase -= span
		}
	}
	b.lastRef, b.haveRef = ref, true
	return ref + b.refBase
}

// applyLocked applies one decoded feedback, received at now (unix µs).
// Call with b.mu held.
func (b *bwe) applyLocked(fb *twccFeedback, now int64) {
	ref := b.unwrapRef(fb.refTime)
	gapRecv, gapLost := 0, 0 // packets sent before a timeout cut (bwetimeout.go)
	newest := int64(0)       // send time of the newest packet reported received
	for i, st := range fb.status {
		seq := fb.baseSeq + uint16(i)
		b.probes.onReport(seq)
		size, cluster, sent, ok := b.hist.get(seq, now)
		if !ok {
			continue
		}
		if b.cutFrom != 0 && sent <= b.cutAt {
			if st == twccNotReceived {
				gapLost++
			} else {
				gapRecv++
			}
		}
		// A probe's packets (its media too) do not count towards the
		// loss-based cap: the probe's own verdict says whether it fitted.
		if st == twccNotReceived {
			if cluster == 0 {
				b.loss.lost++
			}
			b.probes.onLost(cluster)
			continue
		}
		if cluster == 0 {
			b.loss.received++
		}
		newest = max(newest, sent)
		arrival := ref + fb.arrival[i]
		b.acked.add(arrival, size)
		b.delay.add(sent, arrival, size)
		b.probes.onAck(cluster, sent, arrival, size)
	}
	if newest > 0 {
		b.noteReportDelay(now - newest)
	}
	b.feedbackSeen(fb.baseSeq+uint16(len(fb.status)), now)
	b.afterSilence(gapRecv, gapLost)
	b.update(now)
}

// takeProbe applies a finished probe's result, if it is in: it reports
// whether the result raised the target's rate. Call with b.mu held.
func (b *bwe) takeProbe(now int64) bool {
	r, ok := b.probes.result(now)
	if !ok || r <= float64(b.target.Load()) {
		return false
	}
	// The link carried the probe without loss: that is the estimate
	// now, and the loss that capped it is over. (The delay-based rate
	// may have been higher, but unproven: while loss capped the
	// estimate, nothing tested it.)
	b.aimd.rate = r
	b.aimd.state = aimdHold
	b.loss.cap = 0
	b.graceUntil = now + probeGrace
	b.raises.Add(1)
	counters.bweProbeRaises.Add(1)
	b.counts.probeRaises.Add(1)
	return true
}

// settleProbe takes probe id's result at now if no feedback has yet (its
// last packets unreported, and nothing sent since to bring another
// report): the prober calls it probeSettleMax after the probe's end.
func (b *bwe) settleProbe(id uint16, now int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.probes.id == id && b.takeProbe(now) {
		b.publish(true)
	}
}

// update turns the parts' state into the target.
func (b *bwe) update(now int64) {
	acked := b.acked.rate
	raised := b.takeProbe(now)
	usage := b.delay.state
	if usage == usageOver && now < b.graceUntil {
		// The probe just carried this rate without loss, while what is
		// acknowledged is still the lower layer's traffic: a decrease
		// now would land at 85% of that, below the layer the probe
		// opened, and undo the recovery before it starts. On a busy
		// receiver such verdicts come from its late reads, and were
		// why recovering sometimes took 40 s instead of 2. A real queue
		// still shows once the grace is over, and loss at once.
		usage = usageUnder // hold
	}
	before, lc := b.aimd.rate, b.loss.cap
	b.aimd.update(usage, acked, now)
	b.loss.update(now, b.aimd.rate, acked)
	if b.aimd.rate < before {
		counters.bweDelayDecreases.Add(1)
		b.counts.delayDecreases.Add(1)
	}
	if b.loss.cap > 0 && (lc == 0 || b.loss.cap < lc) {
		counters.bweLossDecreases.Add(1)
		b.counts.lossDecreases.Add(1)
	}
	b.publish(raised)
}

// publish stores the target the parts give, and tells the allocator when
// it fell by more than 15% or a probe raised it. Call with b.mu held.
func (b *bwe) publish(raised bool) {
	t := b.aimd.rate
	if b.loss.cap > 0 {
		t = min(t, b.loss.cap)
	}
	target := uint64(max(bweMin, min(t, bweMax)))
	b.target.Store(target)
	tell := raised
	switch {
	case target >= b.reported:
		b.reported = target
	case target < b.reported*85/100:
		b.reported, tell = target, true
	}
	if f := b.changed.Load(); tell && f != nil {
		(*f)()
	}
}

// startProbe opens probe cluster id; endProbe closes it at the last
// sequence number sent in it (lastSeq).
func (b *bwe) startProbe(id uint16, now int64) {
	counters.bweProbes.Add(1)
	b.counts.probes.Add(1)
	b.mu.Lock()
	b.probes.start(id, now)
	b.mu.Unlock()
}

func (b *bwe) endProbe(now int64, lastSeq uint16) {
	b.mu.Lock()
	b.probes.end(now, lastSeq)
	b.mu.Unlock()
}

// ackedRate is the rate the receiver acknowledged: bytes over arrival
// time, in windows of at least 500 ms; the estimate is the higher of the
// last two windows. A receiver that stalls (a busy machine: it reads its
// socket late, then all at once) splits its packets into a slow window and
// a fast one; a real bottleneck makes both slow.
type ackedRate struct {
	start      int64 // arrival µs of the window's first packet
	bytes      int
	prev, last float64 // bits/s of the last two full windows
	rate       float64 // max(prev, last); 0 = none yet
	have       bool
}

func (a *ackedRate) add(arrival int64, size int) {
	if !a.have || arrival < a.start {
		a.start, a.bytes, a.have = arrival, 0, true
	}
	a.bytes += size
	if d := arrival - a.start; d >= 500_000 {
		a.prev, a.last = a.last, float64(a.bytes)*8e6/float64(d)
		a.rate = max(a.prev, a.last)
		a.start, a.bytes = arrival, 0
	}
}

// lossCap is the loss-based part: above 10% loss the rate falls by half the
// loss, at most every 300 ms; below 2% the cap grows 8% a step, but not
// beyond 1.5× the acknowledged rate (as the delay-based rate), and lifts
// once it reaches the delay-based rate.
type lossCap struct {
	lost, received int
	last           int64 // µs of the last step
	lossyAt        int64 // µs of the last step with more than 10% loss
	lossyPrev      int64 // and of the one before
	cap            float64
}

func (l *lossCap) update(now int64, rate, acked float64) {
	n := l.lost + l.received
	if n < 20 || now-l.last < 300_000 {
		return
	}
	loss := float64(l.lost) / float64(n)
	l.lost, l.received, l.last = 0, 0, now
	switch {
	case loss > 0.10:
		l.lossyPrev, l.lossyAt = l.lossyAt, now
		c := rate
		if l.cap > 0 {
			c = min(c, l.cap)
		}
		l.cap = c * (1 - loss/2)
	case loss < 0.02 && l.cap > 0:
		c := l.cap * 1.08
		if acked > 0 {
			c = min(c, max(l.cap, 1.5*acked+10_000))
		}
		l.cap = c
		if l.cap >= rate {
			l.cap = 0
		}
	}
}
