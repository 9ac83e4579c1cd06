package sfu

import (
	"slices"
	"strings"
	"time"

	"github.com/starling-rtc/starling/internal/clock"
)

// probeTick is how often the prober sends a burst of padding.
const probeTick = 20 * time.Millisecond

// paddingWireSize is one padding packet on the wire: 255 bytes of padding,
// the RTP header with the TWCC extension, and the SRTP tag.
const paddingWireSize = 255 + 12 + 8 + 10

// PaddingWireSize is the bytes of one probe packet on the wire, for the
// allocator's sizing of probes (room/allocation.go).
const PaddingWireSize = paddingWireSize

// EstimatedBitrate is the estimate of this subscriber's downlink in bits/s:
// Starling's estimator over TWCC feedback (bwe.go) when the client
// negotiated it, else REMB or receiver-report loss; 0 when bandwidth
// estimation is off.
func (s *Subscriber) EstimatedBitrate() uint64 {
	if s.bw == nil {
		return 0
	}
	if !s.twcc.Load() {
		return s.fallback.estimate(time.Now())
	}
	// Feedback that stopped while packets were sent lowers the estimate
	// (bwetimeout.go): checked here, once per allocation round.
	s.bw.est.checkFeedback(clock.Micros(), uint16(s.bw.next.Load()-1))
	return s.bw.est.estimate()
}

// LossLimited reports whether loss is holding this subscriber's estimate
// down (more than 10% of its packets lost, twice in the last 3 s), as
// opposed to a growing delay alone; without TWCC the estimate comes from loss (or the
// client's own REMB) anyway.
func (s *Subscriber) LossLimited() bool {
	if s.bw == nil {
		return false
	}
	if !s.twcc.Load() {
		return true
	}
	return s.bw.est.lossLimited()
}

// ProbeRaises counts the probes whose measured rate raised this
// subscriber's estimate: the allocator upgrades at once when it grew,
// whenever the result came in.
func (s *Subscriber) ProbeRaises() uint64 {
	if s.bw == nil {
		return 0
	}
	return s.bw.est.raises.Load()
}

// OnEstimateChanged sets f to run when the subscriber's estimate falls by
// more than 15% at once, or a probe raised it, so that layers follow
// without waiting for the next allocation round. f runs on a feedback
// goroutine and must not block.
func (s *Subscriber) OnEstimateChanged(f func()) {
	if s.bw != nil {
		s.bw.est.changed.Store(&f)
	}
}

// Probe sends padding at rate bits/s on top of the media for d, so the
// estimator can see whether the downlink has room before a layer is raised
// (raising first and finding out by loss is what causes congestion). It
// returns false when a probe is already running or the connection is closed.
func (s *Subscriber) Probe(rate uint64, d time.Duration) bool {
	s.probeMu.Lock()
	defer s.probeMu.Unlock()
	if s.probing || s.stopped {
		return false
	}
	s.probing = true
	s.probeWG.Add(1)
	go s.probe(rate, d)
	return true
}

// Probing reports whether a probe is running.
func (s *Subscriber) Probing() bool {
	s.probeMu.Lock()
	defer s.probeMu.Unlock()
	return s.probing
}

func (s *Subscriber) probe(rate uint64, d time.Duration) {
	defer s.probeWG.Done()
	var id uint16
	if s.bw != nil {
		// Every packet sent from now on belongs to this probe's cluster,
		// whose measured rate the estimator takes once its feedback is in.
		s.probeMu.Lock()
		s.probeID++
		if s.probeID == 0 {
			s.probeID = 1
		}
		id = s.probeID
		s.probeMu.Unlock()
		s.bw.est.startProbe(id, clock.Micros())
		s.bw.lastCluster.Store(uint32(id))
		s.bw.cluster.Store(uint32(id))
	}
	stopped := !s.sendProbe(rate, d)
	if s.bw != nil {
		s.bw.cluster.Store(0)
		// Read after the cluster is cleared: a packet numbered later
		// read the cleared cluster, so none of the probe's is after this.
		s.bw.est.endProbe(clock.Micros(), uint16(s.bw.next.Load()-1))
	}
	s.probeMu.Lock()
	s.probing = false
	s.probeMu.Unlock()
	if s.bw == nil || stopped {
		return
	}
	// Normally the report of the probe's last packet settles it. If that
	// never comes (the packets or the report lost, and a track paused for
	// bandwidth sends nothing after the probe to bring another report),
	// the result is taken from what was reported.
	t := time.NewTimer(time.Duration(probeSettleMax) * time.Microsecond)
	defer t.Stop()
	select {
	case <-s.stopProbe:
	case <-t.C:
		s.bw.est.settleProbe(id, clock.Micros())
	}
}

// probeCatchUp is the most padding one wake of the prober sends (as time
// of the probe's rate), and probeOverrun how long past its duration a
// probe may run to send what it owes.
const (
	probeCatchUp = 5 * probeTick
	probeOverrun = 5 * probeTick
)

// sendProbe sends rate bits/s of padding for d; false if the subscriber
// was closed. What is owed follows the clock, not the ticks: on a busy
// machine the ticker's wake-ups come late and are dropped (a 300 ms probe
// of 15 ticks got 5 to 12 of them at load 20 on two cores), and a probe
// paced by ticks sent a third to four fifths of its rate, measured less
// than the layer it was to open, and failed. A late wake-up sends what is owed, up to probeCatchUp
// at once, and the probe runs up to probeOverrun longer to send the rest
// (the wake that finds the overrun passed sends once more).
func (s *Subscriber) sendProbe(rate uint64, d time.Duration) bool {
	perSec := float64(rate) / 8 / paddingWireSize
	total := int(perSec * d.Seconds())
	counters.paddingPlanned.Add(uint64(total))
	if s.bw != nil {
		s.bw.est.counts.paddingPlanned.Add(uint64(total))
	}
	burst := max(1, int(perSec*probeCatchUp.Seconds()))
	t := time.NewTicker(probeTick)
	defer t.Stop()
	start := time.Now()
	sent := 0
	for sent < total {
		select {
		case <-s.stopProbe:
			return false
		case <-t.C:
		}
		el := time.Since(start)
		// A wake past the overrun still sends what is owed (up to a
		// burst) before the probe ends: a last tick a few ms late used to
		// drop the probe's tail (42 of 45 sent, the last wake at 404 ms,
		// beside two busy loops on two cores).
		if n := min(int(perSec*min(el, d).Seconds())-sent, burst); n > 0 {
			w, busy := s.pad(n)
			if w == 0 && !busy {
				break // nothing to pad on
			}
			// What was written, not what was asked: a track that took
			// part of a burst (its queue full) leaves the rest owed.
			sent += w
		}
		if el > d+probeOverrun {
			break
		}
	}
	return true
}

// pad writes up to n padding packets on one of the subscriber's video
// tracks and returns how many it wrote; busy reports that a track that
// could take them is in the middle of a frame (writePadding), so the next
// wake may succeed.
//
// Which track (until session 24, the first in Go's map order: random):
//   - tracks that have forwarded media before those that have not: a
//     stream that flows is where every receiver expects padding (libwebrtc
//     pads a media SSRC only after it has sent a frame); padding before a
//     stream's first media is for a subscriber with nothing else to pad on
//     (Munger.Pad);
//   - in turn, from the track after the one that took the last burst: each
//     burst goes into one track's send queue, behind its media, so taking
//     turns spreads a probe over the tracks' queues instead of loading the
//     same one every time, and a track in the middle of a frame leaves the
//     burst to the next;
//   - in track id order, so that the same state pads the same track, run
//     after run.
//
// Not "the track whose layer is next to upgrade": the link carries the
// bytes whatever stream they are on, and the allocator's choice is the
// room's, not known here.
func (s *Subscriber) pad(n int) (written int, busy bool) {
	s.dmu.Lock()
	order := s.padOrder[:0]
	for _, d := range s.down {
		order = append(order, d)
	}
	s.dmu.Unlock()
	defer func() {
		clear(order) // no track kept alive by the scratch
		s.padOrder = order[:0]
	}()
	slices.SortFunc(order, func(a, b *DownTrack) int { return strings.Compare(a.id, b.id) })
	first := 0
	for first < len(order) && order[first].id <= s.padLast {
		first++
	}
	for _, media := range [2]bool{true, false} {
		for k := range order {
			d := order[(first+k)%len(order)]
			if d.hasForwarded() != media {
				continue
			}
			w, mid := d.writePadding(n)
			busy = busy || mid
			if w > 0 {
				s.padLast = d.id
				return w, false
			}
		}
	}
	return 0, busy
}

// Close stops probing and closes the connection.
func (s *Subscriber) Close() error {
	s.probeMu.Lock()
	if !s.stopped {
		s.stopped = true
		close(s.stopProbe)
	}
	s.probeMu.Unlock()
	s.probeWG.Wait()
	return s.peer.Close()
}
