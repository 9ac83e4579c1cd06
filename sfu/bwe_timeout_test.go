package sfu

import "testing"

// TestBWEFeedbackTimeout: a link that drops every packet sends no
// feedback; the estimate must fall anyway (halving per second of silence
// while media is sent), and count as loss, so the allocator stops flooding
// it. Before, with nothing to react to, it stayed where it was (3.1 Mbit/s
// here) for good.
func TestBWEFeedbackTimeout(t *testing.T) {
	s := newLinkSim(t, 3_000_000)
	s.media = 1_600_000
	s.run(3_000_000, nil)
	before := s.b.estimate()
	s.loss = 1
	check := func() { s.b.checkFeedback(s.now, s.seq-1) }
	// The sim's feedback comes every 100 ms while packets arrive: with
	// none arriving there is none, and the allocator's rounds check.
	for range 35 {
		s.run(100_000, nil)
		check()
	}
	after := s.b.estimate()
	t.Logf("estimate %d bit/s before the link went dead, %d after 3.5 s of silence (%d cuts)", before, after, s.b.counts.feedbackTimeouts.Load())
	if after > before/4 {
		t.Fatalf("estimate %d bit/s after 3.5 s without feedback, %d before", after, before)
	}
	if !s.lossLimitedAt() {
		t.Fatal("a silent link does not count as lossy")
	}
	// The link comes back: the estimate does not jump back to what it was.
	s.loss = 0
	s.run(1_000_000, check)
	if e := s.b.estimate(); e > before/2 {
		t.Fatalf("estimate %d bit/s once a dead link came back, %d before it died", e, before)
	}
}

// TestBWEStalledReaderRestored: a receiver that stops reading for 1.3 s
// (a starved client) also sends no feedback; the cut is undone once its
// feedback reports the packets of the silence as received.
func TestBWEStalledReaderRestored(t *testing.T) {
	s := newLinkSim(t, 3_000_000)
	s.media = 1_600_000
	s.run(3_000_000, nil)
	before, raises := s.b.estimate(), s.b.raises.Load()
	s.stallEvery, s.stallFor = s.now, 1_300_000 // one stall, from now (the next at twice now)
	low := before
	for range 20 {
		s.run(100_000, nil)
		s.b.checkFeedback(s.now, s.seq-1)
		low = min(low, s.b.estimate())
	}
	t.Logf("estimate %d bit/s before a 1.3 s stall, %d at its lowest, %d after (%d cuts)", before, low, s.b.estimate(), s.b.counts.feedbackTimeouts.Load())
	if low >= before {
		t.Fatal("no cut in a 1.3 s silence")
	}
	if s.b.estimate() < before || s.b.raises.Load() == raises || s.lossLimitedAt() {
		t.Fatalf("estimate %d bit/s (raises %d, lossy %v) after the stalled reader reported everything, %d before",
			s.b.estimate(), s.b.raises.Load()-raises, s.lossLimitedAt(), before)
	}
}

// lossLimitedAt is lossLimited at the sim's virtual time.
func (s *linkSim) lossLimitedAt() bool {
	l := &s.b.loss
	return l.lossyPrev != 0 && s.now-l.lossyPrev < 3_000_000
}
