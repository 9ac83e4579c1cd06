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

// TestBWEFeedbackTimeoutLongRTT: on a link whose reports take 1.2 s (a
// long round trip), a track that stops sending and resumes (a pause, a
// probe from a paused track) has its first packets reported 1.2 s after
// they were sent, while the last feedback is older still. That is not a
// dead link and must not be cut (with the fixed 1 s it was: the first
// report was late by the timeout's measure). The same link going dead is
// still cut, as soon as on a short link after its last feedback.
func TestBWEFeedbackTimeoutLongRTT(t *testing.T) {
	s := newLinkSim(t, 3_000_000)
	s.delay = 1_200_000
	s.media = 1_600_000
	check := func() { s.b.checkFeedback(s.now, s.seq-1) }
	s.run(4_000_000, check)
	s.media = 0 // paused
	s.run(2_000_000, check)
	s.media = 1_600_000 // resumed
	s.run(4_000_000, check)
	s.media = 0 // paused again, then a probe alone
	s.run(2_000_000, check)
	s.b.startProbe(1, s.now)
	s.probe = 1_500_000
	s.run(300_000, check)
	s.probe = 0
	s.b.endProbe(s.now, s.seq-1)
	s.media = 1_600_000
	s.run(3_000_000, check)
	s.b.mu.Lock()
	rd := s.b.reportDelay
	s.b.mu.Unlock()
	if n := s.b.counts.feedbackTimeouts.Load(); n != 0 {
		t.Fatalf("%d feedback timeouts on a live link whose reports take %d ms", n, rd/1000)
	}
	if rd < 1_200_000 || rd > 1_400_000 {
		t.Fatalf("report delay %d ms on a link with 1.2 s of propagation and reports every 100 ms", rd/1000)
	}

	// The link dies: its last feedback comes a round trip later, then
	// one fbTimeout of silence cuts.
	before := s.b.estimate()
	s.loss = 1
	died, cutAt := s.now, int64(0)
	s.run(5_000_000, func() {
		check()
		if cutAt == 0 && s.b.counts.feedbackTimeouts.Load() > 0 {
			cutAt = s.now
		}
	})
	t.Logf("report delay %d ms; the dead link cut %d ms after it died, estimate %d -> %d bit/s",
		rd/1000, (cutAt-died)/1000, before, s.b.estimate())
	if cutAt == 0 || cutAt-died > rd+fbTimeout+200_000 {
		t.Fatalf("a dead link with a %d ms report delay cut %d ms after it died (0: never)", rd/1000, (cutAt-died)/1000)
	}
	if s.b.estimate() > before/2 || !s.lossLimitedAt() {
		t.Fatalf("estimate %d bit/s (lossy %v) after a dead link's silence, %d before", s.b.estimate(), s.lossLimitedAt(), before)
	}
}

// TestBWEFeedbackTimeoutLostTail: a probe from a paused track whose last
// packets a narrow link drops leaves them unreported for good (nothing
// sent after them reveals their loss), while the link is alive: its
// feedback came after they were sent. That is not a dead link, and the
// silence that follows (the track still paused) must not cut. Sending
// into a link that went dead still does.
func TestBWEFeedbackTimeoutLostTail(t *testing.T) {
	s := pausedSim(t)
	check := func() { s.b.checkFeedback(s.now, s.seq-1) }
	s.b.startProbe(3, s.now)
	s.probe = 600_000
	s.run(280_000, check)
	s.loss = 1 // the last 20 ms
	s.run(20_000, check)
	s.probe, s.loss = 0, 0
	s.b.endProbe(s.now, s.seq-1)
	s.run(3_000_000, check)
	if n := s.b.counts.feedbackTimeouts.Load(); n != 0 {
		t.Fatalf("%d feedback timeouts after a probe whose tail was lost, on a live link", n)
	}
	s.loss = 1
	s.media = 300_000
	s.run(3_000_000, check)
	if s.b.counts.feedbackTimeouts.Load() == 0 {
		t.Fatal("no feedback timeout with media sent into a dead link")
	}
}

// TestBWEFeedbackTimeoutLongLostTail: a probe from a paused track whose
// last 150 ms a narrow link drops, longer than the client's report
// interval, so that the report of its last delivered packet comes before
// its tail was sent: the tail is outstanding, sent after the last feedback,
// with nothing after it. That is still a lost tail on a live link, not a
// dead one, and must not cut (before: one cut, the estimate halved and the
// link marked lossy between probes). A second probe sent into a dead link
// still cuts: the packets outstanding then span two probes.
func TestBWEFeedbackTimeoutLongLostTail(t *testing.T) {
	s := pausedSim(t)
	check := func() { s.b.checkFeedback(s.now, s.seq-1) }
	before := s.b.estimate()
	s.b.startProbe(3, s.now)
	s.probe = 600_000
	s.run(150_000, check)
	s.loss = 1 // the last 150 ms: over a report interval
	s.run(150_000, check)
	s.probe = 0
	s.b.endProbe(s.now, s.seq-1)
	// The case this test is about: the last feedback came before the
	// newest packet (the tail's last) was sent.
	s.b.mu.Lock()
	lastFb, fbNext := s.b.lastFb, s.b.fbNext
	s.b.mu.Unlock()
	_, _, newestSent, ok := s.b.hist.get(s.seq-1, s.now)
	if !ok || newestSent < lastFb || int16(s.seq-1-fbNext) < 0 {
		t.Fatalf("the premise does not hold: last feedback at %d µs, the tail's last packet sent at %d (%v), %d outstanding",
			lastFb, newestSent, ok, int16(s.seq-fbNext))
	}
	s.run(3_000_000, check)
	if n := s.b.counts.feedbackTimeouts.Load(); n != 0 {
		t.Fatalf("%d feedback timeouts after a probe whose last 150 ms were lost, on a live link (estimate %d, %d before)",
			n, s.b.estimate(), before)
	}
	if s.lossLimitedAt() {
		t.Fatal("a probe's lost tail marked the link lossy")
	}
	// The link is dead: a second probe goes into it, and nothing comes back.
	s.b.startProbe(4, s.now)
	s.probe = 600_000
	s.run(300_000, check)
	s.probe = 0
	s.b.endProbe(s.now, s.seq-1)
	s.run(3_000_000, check)
	if s.b.counts.feedbackTimeouts.Load() == 0 {
		t.Fatal("no feedback timeout after a second probe into a dead link")
	}
}
