package server_test

import (
	"testing"
	"time"

	"github.com/pion/interceptor"
	"github.com/starling-rtc/starling/client"
	"github.com/starling-rtc/starling/config"
	"github.com/starling-rtc/starling/protocol"
	"github.com/starling-rtc/starling/sfu"
)

// TestCongestionNeverStartedProbes: a subscriber that joins on a downlink
// narrower than the lowest layer, with a starting estimate that says so,
// has its video paused for bandwidth; once the link frees, a probe must
// find the room and the video start.
//
// Through the allocator the track still forwards its lowest layer's first
// keyframe before the pause (it pauses only on loss, and loss needs packets
// sent), so this is the scenario end to end, not the never-started state
// itself: a track paused before its first packet (its keyframe later than
// the four rounds a pause waits, on a subscriber already lossy) probes with
// padding on its negotiated SSRC, sfu.TestProbeWithoutMedia.
func TestCongestionNeverStartedProbes(t *testing.T) {
	timingTest(t, groupCongestion) // see TestCongestionSwitchesDown
	srv := startServer(t, func(c *config.Config) {
		withBWE(c)
		c.RTC.InitialBitrate = 100_000 // below the lowest layer (0.25 Mbit/s)
	})
	th := &throttle{}
	th.set(100_000)
	api, err := client.LoopbackAPIWith([]interceptor.Factory{th})
	if err != nil {
		t.Fatal(err)
	}
	slow := join(t, srv, "bwe-start", "narrow", func(o *client.Options) { o.API = api })
	v := watchVideo(slow)
	pub := join(t, srv, "bwe-start", "camera")
	f := publishSimulcast(t, pub, 1, 2, 6)
	id := f.published.ID
	eng := srv.Engine()
	waitFor(t, 30*time.Second, "the track paused for bandwidth", func() bool {
		u := lastUpdate(slow, id)
		return u.Reason == sfu.ReasonBandwidth && u.Layer == protocol.QualityPaused
	})
	before := eng.BWECounters()
	var c sfu.BWECounters
	waitFor(t, 30*time.Second, "two probes while paused, each written to its end", func() bool {
		c = eng.BWECounters()
		return c.Probes >= before.Probes+2 && c.PaddingSent >= c.PaddingPlanned
	})
	sizes, packets := v.snapshot()
	t.Logf("paused: %d probes, padding %d planned %d written; the subscriber has %d video packets, %d keyframes",
		c.Probes-before.Probes, c.PaddingPlanned-before.PaddingPlanned, c.PaddingSent-before.PaddingSent, packets, len(sizes))
	th.set(0)
	start := time.Now()
	waitFor(t, 30*time.Second, "a keyframe after the link freed", func() bool {
		s, _ := v.snapshot()
		return len(s) > len(sizes)
	})
	t.Logf("first keyframe %v after the link freed", time.Since(start))
	v.waitHeight(t, 30*time.Second, 720)
	t.Logf("720p %v after the link freed", time.Since(start))
}
