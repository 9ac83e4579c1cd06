package server_test

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pion/interceptor"
	"github.com/starling-rtc/starling/client"
	"github.com/starling-rtc/starling/config"
	"github.com/starling-rtc/starling/protocol"
)

func isVideoMime(mime string) bool { return strings.HasPrefix(strings.ToLower(mime), "video/") }

// runMediaFor runs the fake publisher until it has sent n video packets, then
// stops it. Callers wait for retransmissions with waitCoverage.
func runMediaFor(t *testing.T, media *fakeMedia, n int) (sentVideo, sentAudio [][]byte) {
	t.Helper()
	waitFor(t, 60*time.Second, "the publisher to send its packets", func() bool {
		media.mu.Lock()
		defer media.mu.Unlock()
		return len(media.sentVideo) >= n
	})
	media.Stop()
	media.mu.Lock()
	defer media.mu.Unlock()
	return media.sentVideo, media.sentAudio
}

// withCongestionControl runs f with the server's congestion control (TWCC +
// GCC + allocator) off and on: NACK/RTX must work with both. f gets a
// knownIssue func: with congestion control on, a failure with the signature
// of an issue already reported to the owner of that code skips the subtest
// with the reason instead of failing it (so the suite stays usable until the
// fix lands, and the test asserts again by itself once it has).
//
// With congestion control on, f is timing-judging (GCC reads a CPU starved
// by other tests as a congested network): under -race it runs before the
// package's parallel tests start, and the test turns parallel for f with
// it off; otherwise the whole test is a timing test (sched_test.go) and
// both run at once (with it off, f runs no estimator; one after the
// other, the loss tests were a third of the congestion group's chain, the
// timing phase's longest).
func withCongestionControl(t *testing.T, f func(t *testing.T, tune func(*config.Config), knownIssue func(string))) {
	timingTest(t, groupCongestion)
	run := func(t *testing.T, on bool) {
		known := func(string) {}
		if on {
			known = func(why string) { t.Skipf("KNOWN ISSUE with congestion control on: %s", why) }
		}
		f(t, func(c *config.Config) { c.RTC.CongestionControl = on }, known)
	}
	if !raceEnabled {
		sideBySide(t, []string{"cc=on", "cc=off"}, func(t *testing.T, i int) { run(t, i == 0) })
		return
	}
	for _, on := range []bool{true, false} {
		name := "cc=off"
		if on {
			name = "cc=on"
		} else {
			parallel(t)
		}
		t.Run(name, func(t *testing.T) { run(t, on) })
	}
}

// pausedForBandwidth reports whether the server ever paused one of c's
// tracks for bandwidth.
func pausedForBandwidth(c *client.Client) bool {
	for _, e := range c.Events() {
		if e.Method == protocol.NotifySubscriptionUpdated &&
			strings.Contains(string(e.Params), `"`+protocol.QualityPaused+`"`) &&
			strings.Contains(string(e.Params), "bandwidth") {
			return true
		}
	}
	return false
}

// TestLossRecoveryDownstream: 5% random loss on one subscriber's incoming
// packets (media and RTX), injected at its own end. Its NACKs are answered
// by the SFU's down track (pion's NACK responder keeps what the down track
// wrote) on the RTX stream negotiated for it; it still gets at least 99.5%
// of the video, and a second subscriber in the same room loses nothing.
func TestLossRecoveryDownstream(t *testing.T) {
	withCongestionControl(t, testLossRecoveryDownstream)
}

func testLossRecoveryDownstream(t *testing.T, tune func(*config.Config), knownIssue func(string)) {
	srv := startServer(t, tune)
	const roomName = "loss-down"
	before := scrape(t, srv)
	rtxBefore, replayedBefore := before["starling_retransmitted_packets_total"], before["starling_late_keyframe_replayed_packets_total"]
	loss := newLossInjector(0.05, lossIncoming, 4, nil)
	lossy := join(t, srv, roomName, "lossy", withClientAPI(faultAPI(t, apiOptions{first: []interceptor.Factory{loss}, noReplayCheck: true})))
	lossyRec := record(lossy)
	clean := join(t, srv, roomName, "clean")
	cleanRec := record(clean)
	pub := join(t, srv, roomName, "pub")
	media := publishFake(t, pub)
	video, audio := media.track("video"), media.track("audio")
	waitFor(t, 15*time.Second, "media at both subscribers", func() bool {
		return len(lossyRec.payloads(video.ID)) > 30 && len(cleanRec.payloads(video.ID)) > 30
	})

	sentVideo, sentAudio := runMediaFor(t, media, 450) // 5 s of video

	// RTX is negotiated for the lossy subscriber and carries the repairs.
	rd := lossy.Subscriber().RemoteDescription()
	if rd == nil || !strings.Contains(rd.SDP, "rtx/90000") || !strings.Contains(rd.SDP, "a=ssrc-group:FID") {
		t.Fatalf("the server's subscriber offer negotiates no RTX stream")
	}
	recv, want := waitCoverage(sentVideo, func() [][]byte { return lossyRec.payloads(video.ID) }, 10, 0.995)
	aRecv, aWant := packetCoverage(sentAudio, lossyRec.payloads(audio.ID), 5)
	// The server counts a retransmission once written, which may be after
	// the subscriber has it: wait for the count to catch up.
	rtxSeen := float64(loss.rtxSeen.Load())
	var rtxCounted float64
	deadline := time.Now().Add(10 * time.Second)
	for rtxCounted < rtxSeen && time.Now().Before(deadline) {
		rtxCounted = scrape(t, srv)["starling_retransmitted_packets_total"] - rtxBefore
		time.Sleep(20 * time.Millisecond)
	}
	if rtxCounted < rtxSeen {
		t.Errorf("starling_retransmitted_packets_total grew by %v, but %v RTX packets arrived", rtxCounted, rtxSeen)
	}
	// A process total (other tests' subscribers add to it): informative.
	t.Logf("late keyframe starts: %v refused packets replayed",
		scrape(t, srv)["starling_late_keyframe_replayed_packets_total"]-replayedBefore)
	t.Logf("lossy subscriber: video %d/%d (%.2f%%); %d of %d media packets dropped (%.1f%%); "+
		"it NACKed %d seqs and %d RTX packets arrived (%d of them dropped); audio %d/%d (%.1f%%, audio has no NACK)",
		recv, want, 100*float64(recv)/float64(want), loss.dropped.Load(), loss.seen.Load(),
		100*float64(loss.dropped.Load())/float64(loss.seen.Load()), loss.nacksSent.Load(),
		loss.rtxSeen.Load(), loss.rtxDropped.Load(), aRecv, aWant, 100*float64(aRecv)/float64(aWant))
	if loss.dropped.Load() < int64(want)/40 {
		t.Fatalf("only %d packets were dropped: the fault was not injected", loss.dropped.Load())
	}
	if loss.rtxSeen.Load() == 0 {
		knownIssue("no retransmission reached the subscriber")
		t.Fatalf("no packet arrived on the RTX stream: losses were not repaired " +
			"(with congestion control on: does the congestion-control interceptor (sfu/bweio.go) pass RTX packets on?)")
	}
	if float64(recv) < 0.995*float64(want) {
		// Which packets, and did the clean subscriber get them: lost on the
		// way to the SFU (both miss them) or on the way down (only lossy).
		t.Logf("lossy subscriber missed sent packets %v; the clean subscriber missed %v (indexes among %d sent)",
			missingIndexes(sentVideo, lossyRec.payloads(video.ID), 10), missingIndexes(sentVideo, cleanRec.payloads(video.ID), 10), len(sentVideo))
		if pausedForBandwidth(lossy) {
			knownIssue("the allocator paused the lossy subscriber's video for bandwidth on loopback")
			t.Errorf("the allocator paused the lossy subscriber's video for bandwidth")
		}
		t.Fatalf("lossy subscriber received %d of %d video packets (%.2f%%), want at least 99.5%%",
			recv, want, 100*float64(recv)/float64(want))
	}

	cRecv, cWant := waitCoverage(sentVideo, func() [][]byte { return cleanRec.payloads(video.ID) }, 0, 1)
	caRecv, caWant := waitCoverage(sentAudio, func() [][]byte { return cleanRec.payloads(audio.ID) }, 0, 1)
	t.Logf("clean subscriber: video %d/%d, audio %d/%d", cRecv, cWant, caRecv, caWant)
	if cRecv != cWant || caRecv != caWant {
		if cRecv != cWant && caRecv == caWant && pausedForBandwidth(clean) {
			// On a CPU-saturated machine GCC reads processing delay as
			// congestion; a pause is the allocator's tested behaviour, not a loss.
			knownIssue("the allocator paused the clean subscriber's video for bandwidth on a loaded loopback")
		}
		t.Fatalf("the other subscriber lost packets: video %d/%d, audio %d/%d", cRecv, cWant, caRecv, caWant)
	}
	assertRun(t, "clean subscriber video", sentVideo, cleanRec.payloads(video.ID))
}

// TestLossRecoveryUpstream: 5% random loss between the publisher and the
// SFU (dropped at the publisher's own end, after its NACK responder kept a
// copy). The SFU's NACK generator asks the publisher again, and both
// subscribers get the recovered packets.
func TestLossRecoveryUpstream(t *testing.T) {
	withCongestionControl(t, testLossRecoveryUpstream)
}

func testLossRecoveryUpstream(t *testing.T, tune func(*config.Config), knownIssue func(string)) {
	srv := startServer(t, tune)
	replayedBefore := scrape(t, srv)["starling_late_keyframe_replayed_packets_total"]
	const roomName = "loss-up"
	subs := make([]*client.Client, 2)
	recs := make([]*recorder, 2)
	for i := range subs {
		subs[i] = join(t, srv, roomName, "sub")
		recs[i] = record(subs[i])
	}
	loss := newLossInjector(0.05, lossOutgoing, 7, isVideoMime)
	pub := join(t, srv, roomName, "pub", withClientAPI(faultAPI(t, apiOptions{first: []interceptor.Factory{loss}})))
	media := publishFake(t, pub)
	video := media.track("video")
	waitFor(t, 15*time.Second, "media at the subscribers", func() bool {
		return len(recs[0].payloads(video.ID)) > 30 && len(recs[1].payloads(video.ID)) > 30
	})

	seenBefore := loss.nacksSeen.Load()
	nacksBefore := scrape(t, srv)["starling_nacks_sent_total"]
	loss.mark() // the SFU reads the stream by now: every later loss it can see gets a NACK
	sentVideo, _ := runMediaFor(t, media, 450)

	// The NACKs the publisher saw show in /metrics (a process total: other
	// tests may add to it, never take away).
	after := scrape(t, srv)
	if got, seen := after["starling_nacks_sent_total"]-nacksBefore, loss.nacksSeen.Load()-seenBefore; got < float64(seen)/2 {
		t.Errorf("starling_nacks_sent_total grew by %v while the publisher received NACKs for %d seqs", got, seen)
	}
	// A process total (other tests' subscribers add to it): informative.
	t.Logf("late keyframe starts: %v refused packets replayed", after["starling_late_keyframe_replayed_packets_total"]-replayedBefore)
	t.Logf("publisher: %d of %d video packets dropped on the way to the SFU; the SFU NACKed %d seqs "+
		"(%.1f per lost packet) and the publisher resent %d packets (%d of them dropped)",
		loss.dropped.Load(), loss.seen.Load(), loss.nacksSeen.Load(),
		float64(loss.nacksSeen.Load())/float64(max(loss.dropped.Load(), 1)), loss.rtxSeen.Load(), loss.rtxDropped.Load())
	if loss.dropped.Load() < int64(len(sentVideo))/60 { // a third of the 5% injected
		t.Fatalf("only %d packets were dropped: the fault was not injected", loss.dropped.Load())
	}
	// The last losses are asked for when they are asked for (10 s at most).
	var missed []uint16
	waitUntil(10*time.Second, func() bool { missed = loss.unasked(); return len(missed) == 0 })
	if len(missed) > 0 {
		t.Fatalf("the SFU never asked for %d of the %d lost packets (seqs %v)", len(missed), loss.dropped.Load(), missed)
	}
	for i, r := range recs {
		recv, want := waitCoverage(sentVideo, func() [][]byte { return r.payloads(video.ID) }, 10, 0.995)
		t.Logf("subscriber %d: video %d/%d (%.2f%%)", i, recv, want, 100*float64(recv)/float64(want))
		for _, p := range missingPayloads(sentVideo, r.payloads(video.ID), 10) {
			t.Logf("subscriber %d never got %s", i, loss.story(p))
		}
		if float64(recv) < 0.995*float64(want) {
			if pausedForBandwidth(subs[i]) {
				knownIssue("the allocator paused a subscriber's 150 kbit/s video for bandwidth on loopback while the publisher's uplink lost 5%")
				t.Errorf("the allocator paused subscriber %d's video for bandwidth (on loopback, for a 150 kbit/s track)", i)
			}
			t.Errorf("subscriber %d received %d of %d video packets (%.2f%%), want at least 99.5%%",
				i, recv, want, 100*float64(recv)/float64(want))
		}
	}
}

// missingIndexes lists the indexes in sent of the payloads packetCoverage
// counts as expected but not received, after the index of the first one
// received (as "first=N").
func missingIndexes(sent, got [][]byte, tail int) []string {
	have := make(map[string]bool, len(got))
	for _, p := range got {
		have[string(p)] = true
	}
	var out []string
	start := -1
	for i, p := range sent[:max(len(sent)-tail, 0)] {
		switch {
		case start < 0 && have[string(p)]:
			start = i
			out = append(out, fmt.Sprintf("first=%d", i))
		case start >= 0 && !have[string(p)]:
			out = append(out, strconv.Itoa(i))
		}
	}
	return out
}
