package server_test

import (
	"testing"
	"time"

	"github.com/pion/interceptor"
	"github.com/starling-rtc/starling/client"
	"github.com/starling-rtc/starling/protocol"
	"github.com/starling-rtc/starling/sfu"
)

// TestCongestionTightLinkHolds: on a downlink that carries the lowest
// layer (0.25 Mbit/s) but not the middle one (0.5), the track settles on
// low and stays there while the allocator keeps probing for the next step:
// each probe fails on the narrow link, and no layer switch follows one
// (counted in subscriptionUpdated, and in the keyframes of other sizes the
// subscriber gets). The probes come sooner since session 24 (the next
// step's right after a raise, a paused track's every second): this is
// what they must not do on a link that stays narrow.
//
// Skipped: it fails, before session 24's changes as after (the track flaps
// between low and paused: docs/congestion.md, "Found, not fixed: a track
// flaps on a link that carries the low layer and little more"). It is the
// check for whoever fixes that.
func TestCongestionTightLinkHolds(t *testing.T) {
	t.Skip("the known flap on a 400 kbit/s link (docs/congestion.md): unskip with its fix")
	timingTest(t, groupCongestion) // see TestCongestionSwitchesDown
	srv := startServer(t, withBWE)
	sh := &shaper{}
	api, err := client.LoopbackAPIWith([]interceptor.Factory{sh})
	if err != nil {
		t.Fatal(err)
	}
	slow := join(t, srv, "bwe-tight", "slow", func(o *client.Options) { o.API = api })
	v := watchVideo(slow)
	pub := join(t, srv, "bwe-tight", "camera")
	id := publishSimulcast(t, pub, 1, 2, 6).published.ID
	v.waitHeight(t, 10*time.Second, 720)
	eng := srv.Engine()
	tl := recordTimeline(t, srv, slow, v, id)
	sh.set(400_000)
	start := time.Now()
	onLow := func() bool {
		u := lastUpdate(slow, id)
		s, _ := v.snapshot()
		return u.Reason == sfu.ReasonBandwidth && u.Layer == protocol.QualityLow && len(s) > 0 && s[len(s)-1] == 180
	}
	waitFor(t, 30*time.Second, "the track on low for bandwidth, its keyframe received", onLow)
	// Settled: a probe started while on low (the allocator probes only
	// after the loss of the step down is over; until then the track may
	// still pause on it, and come back: a recovery, not this test's).
	probes := eng.BWECounters().Probes
	waitFor(t, 30*time.Second, "a probe on low", func() bool {
		n := eng.BWECounters().Probes
		if !onLow() {
			probes = n
			return false
		}
		return n > probes
	})
	t.Logf("settled on low %v after the downlink narrowed to 400 kbit/s", time.Since(start))
	settled := len(updatesFor(slow, id))
	sizes, _ := v.snapshot()
	before := eng.BWECounters()
	// Four probes for the middle layer, each failing on the narrow link;
	// the fifth's start says the fourth's result is in (a report comes
	// within 100 ms of a probe's end, the prober settles it after 1 s, and
	// the next probe comes at least 1 s after the end).
	waitFor(t, 45*time.Second, "five probes on the narrow link", func() bool {
		return eng.BWECounters().Probes >= before.Probes+5
	})
	changes := updatesFor(slow, id)[settled:]
	s, _ := v.snapshot()
	t.Logf("%d probes, %d raises, %d padding packets on the narrow link; since it settled: %d layer changes, keyframes %v\n%s",
		eng.BWECounters().Probes-before.Probes, eng.BWECounters().ProbeRaises-before.ProbeRaises,
		eng.BWECounters().PaddingSent-before.PaddingSent, len(changes), s[len(sizes):], tl.end())
	if len(changes) > 0 {
		t.Errorf("the track switched layers %d times on a link that stayed narrow: %+v", len(changes), changes)
	}
	for _, h := range s[len(sizes):] {
		if h != 180 {
			t.Errorf("a %dp keyframe on a link that carries only the low layer: %v", h, s[len(sizes):])
			break
		}
	}
}
