package sfu

import (
	"sync"

	"github.com/pion/rtcp"
	"github.com/starling-rtc/starling/internal/clock"
)

// Asking publishers for lost packets (NACK, RFC 4585).
//
// Each video layer keeps the sequence numbers it found missing and asks
// the publisher for them every nackInterval until they arrive or have been
// asked for maxNACKsPerPacket times. pion's NACK generator did this before,
// but it only sees the media stream: a packet repaired over the RTX stream
// still looked missing, so every lost packet was asked for (and resent)
// its full count of times whether or not the first resend arrived. With
// that count at 3, every ~100 ms, a publisher whose RTT estimate exceeds
// ~200 ms (a long path, or a starved machine: TestLossRecoveryUpstream
// under load) answered only the first NACK, since publishers (pion,
// libwebrtc) resend one packet at most once per RTT; when that resend was
// lost too, the packet was gone. The layer's read loop (readRTP) sees
// media and repairs alike (pion hands both to TrackRemote.Read, repairs
// rewritten to the media stream's numbers), so a repaired packet is no
// longer asked for, and the asking can go on for longer: maxNACKsPerPacket
// × nackInterval covers about three round trips of 500 ms. The publisher's
// once-per-RTT rule absorbs the NACKs sent while a resend is on its way.
// It was 8 (800 ms): a publisher that reads its socket late (a starved
// process; TestLossRecoveryUpstream beside two busy loops) got the NACKs
// of one packet in two bursts, resent once per burst under its RTT rule,
// and when both resends were lost the SFU had stopped asking. Asking
// longer costs a few RTCP bytes per packet truly lost.
//
// Session 22 (TestLossRecoveryUpstream/cc=on in a loaded suite): the
// publisher read the 15 NACKs of one packet in bursts of 4, 1 and 10 (a
// starved process, sender or receiver side, delivers a second's NACKs at
// one instant, and the publisher resends once per burst), so a budget
// counted in NACKs alone was spent in three bursts; the third resend
// came 3 s after the loss. Now:
//   - a new gap is asked for at once: the read loop wakes the NACK loop
//     (Receiver.monitor) instead of waiting for its next tick;
//   - each missing packet has its own due time: it is asked for at most
//     once per nackInterval/2 however often the loop runs, so a loop woken
//     by a gap and by its tick together, or running late, sends one NACK
//     per packet, never a burst of them;
//   - a packet is given up only after maxNACKsPerPacket NACKs and
//     minNACKSpan after its gap was seen: a starved loop that sends few
//     NACKs still asks for 3 s, and a healthy one asks ~30 times.

const (
	// nackInterval is how often a missing packet is asked for (the NACK
	// loop's tick; a packet asked for is due again nackInterval later,
	// with half of it as slack so that one asked for between ticks is
	// not skipped a whole tick).
	nackInterval = 100e6 // ns
	// maxNACKsPerPacket and minNACKSpan bound how long a packet is asked
	// for: both must be spent before it is given up.
	maxNACKsPerPacket = 15
	minNACKSpan       = 3e9 // ns
	// maxMissing bounds the missing packets a layer tracks; a gap wider
	// than that (a publisher restarting its numbering) is not asked for.
	maxMissing = 256
)

// nackState is a video layer's missing packets. received runs on the
// layer's read goroutine, collect on the receiver's monitor goroutine.
type nackState struct {
	mu      sync.Mutex
	started bool
	highest uint16
	missing []missingSeq // ascending in arrival order of the gaps (oldest first)
	due     []uint16     // scratch for collect
	// kick wakes the NACK loop when a gap opens (the receiver's; nil in
	// tests). Buffered 1: a wake pending covers any number of gaps.
	kick chan struct{}
}

type missingSeq struct {
	seen  int64 // when its gap was seen (clock.Nanos)
	next  int64 // when it is due again
	seq   uint16
	nacks uint8
}

func newNackState() *nackState {
	return &nackState{missing: make([]missingSeq, 0, maxMissing), due: make([]uint16, 0, maxMissing)}
}

// received records a packet's arrival, media or repair. No allocation:
// missing never grows past its capacity.
func (n *nackState) received(seq uint16) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if !n.started {
		n.started, n.highest = true, seq
		return
	}
	d := int16(seq - n.highest)
	switch {
	case d == 1:
		n.highest = seq
	case d > 1:
		if int(d) > maxMissing {
			n.missing = n.missing[:0] // a jump, not a loss
		} else {
			now := clock.Nanos()
			for s := n.highest + 1; s != seq; s++ {
				if len(n.missing) == cap(n.missing) {
					copy(n.missing, n.missing[1:])
					n.missing = n.missing[:len(n.missing)-1]
				}
				n.missing = append(n.missing, missingSeq{seq: s, seen: now, next: now})
			}
			select {
			case n.kick <- struct{}{}:
			default: // a wake is pending already (or no loop: tests)
			}
		}
		n.highest = seq
	case d < 0:
		for i, m := range n.missing {
			if m.seq == seq {
				n.missing = append(n.missing[:i], n.missing[i+1:]...)
				break
			}
		}
	}
}

// collect returns the sequence numbers to ask for at now (valid until the
// next call) and forgets those asked for long enough (maxNACKsPerPacket
// times, and minNACKSpan since their gap).
func (n *nackState) collect(now int64) []uint16 {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.due = n.due[:0]
	kept := n.missing[:0]
	for _, m := range n.missing {
		if now >= m.next-nackInterval/2 {
			n.due = append(n.due, m.seq)
			m.next = now + nackInterval
			if m.nacks < 255 {
				m.nacks++
			}
		}
		if m.nacks < maxNACKsPerPacket || now-m.seen < minNACKSpan {
			kept = append(kept, m)
		}
	}
	n.missing = kept
	return n.due
}

// sendNACKs asks the publisher for each layer's missing packets.
func (r *Receiver) sendNACKs(layers [MaxLayers]*layer) {
	var pkts []rtcp.Packet
	now := clock.Nanos()
	for _, l := range layers {
		if l == nil || l.nack == nil {
			continue
		}
		if seqs := l.nack.collect(now); len(seqs) > 0 {
			pkts = append(pkts, &rtcp.TransportLayerNack{MediaSSRC: l.ssrc, Nacks: rtcp.NackPairsFromSequenceNumbers(seqs)})
		}
	}
	if len(pkts) == 0 {
		return
	}
	if err := r.writeRTCP(pkts); err != nil {
		r.log.Debug("NACK failed", "track", r.id, "err", err)
	}
}
