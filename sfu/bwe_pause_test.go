package sfu

import "testing"

// pausedSim is a linkSim whose estimate a 150 kbit/s link lowered under
// 300 kbit/s of media, after which the media stopped (the allocator paused
// the track for bandwidth) and the link widened: only probes are sent.
func pausedSim(t *testing.T) *linkSim {
	s := newLinkSim(t, 600_000)
	s.media = 300_000
	s.run(2_000_000, nil)
	s.capacity, s.buffer = 150_000, 50_000
	s.run(4_000_000, nil)
	s.media, s.capacity = 0, 0
	s.run(1_000_000, nil)
	if e := s.b.estimate(); e > 300_000 {
		t.Fatalf("estimate %d bit/s after 4 s of a 150 kbit/s link", e)
	}
	return s
}

// TestBWEProbeWhilePaused: a probe sent while nothing else is (a track
// paused for bandwidth) raises the estimate once its last packet is
// reported. Before, the result was taken only at a feedback 150 ms or more
// after the probe's end, and with nothing sent after the probe the
// client's last report came sooner: no probe from a paused track counted.
func TestBWEProbeWhilePaused(t *testing.T) {
	s := pausedSim(t)
	before, raises := s.b.estimate(), s.b.raises.Load()
	s.runProbe(1_000_000)
	t.Logf("estimate %d bit/s before the probe, %d after", before, s.b.estimate())
	if s.b.raises.Load() != raises+1 || s.b.estimate() < 1_200_000 {
		t.Fatalf("estimate %d bit/s, %d raises after a probe of 1.5 Mbit/s on a free link, nothing else sent",
			s.b.estimate(), s.b.raises.Load()-raises)
	}
}

// TestBWEProbeSettlesUnreported: a probe whose last packets are lost, with
// nothing sent after it, is never reported to its end; the prober's
// settleProbe takes its result from what was reported.
func TestBWEProbeSettlesUnreported(t *testing.T) {
	s := pausedSim(t)
	before := s.b.estimate()
	s.b.startProbe(7, s.now)
	s.probe = 1_500_000
	s.run(250_000, nil)
	s.loss = 1 // the last 50 ms are lost
	s.run(50_000, nil)
	s.probe, s.loss = 0, 0
	s.b.endProbe(s.now, s.seq-1)
	s.run(1_200_000, nil)
	if e := s.b.estimate(); e != before {
		t.Fatalf("estimate %d bit/s before the probe was settled, %d before the probe", e, before)
	}
	s.b.settleProbe(6, s.now) // another probe's: not this one's result
	if e := s.b.estimate(); e != before {
		t.Fatalf("estimate %d bit/s after another probe was settled", e)
	}
	s.b.settleProbe(7, s.now)
	t.Logf("estimate %d bit/s before the probe, %d once settled", before, s.b.estimate())
	if s.b.estimate() < 1_200_000 {
		t.Fatalf("estimate %d bit/s after settling a probe of 1.5 Mbit/s on a free link", s.b.estimate())
	}
}
