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
	// A probe while paused must write padding (a track that could not pad
	// wrote none). One probe is over once the engine has written all the
	// padding planned since the pause, or once the next has started (one
	// subscriber probes here, one probe at a time): the test does not ask
	// that every probe be written to its end (a probe cut short on a
	// loaded machine is sfu's to count), only that the paused track
	// carried one. Until session 23 it waited for the totals since the
	// server started to match: a single probe cut short, before or during
	// the pause, kept them apart for good, and the wait timed out.
	before := eng.BWECounters()
	var c sfu.BWECounters
	waitFor(t, 30*time.Second, "a probe while paused, over", func() bool {
		c = eng.BWECounters()
		written := c.PaddingSent-before.PaddingSent >= c.PaddingPlanned-before.PaddingPlanned
		return c.Probes >= before.Probes+2 || c.Probes > before.Probes && written
	})
	sizes, packets := v.snapshot()
	t.Logf("paused: %d probes, padding %d planned %d written; the subscriber has %d video packets, %d keyframes",
		c.Probes-before.Probes, c.PaddingPlanned-before.PaddingPlanned, c.PaddingSent-before.PaddingSent, packets, len(sizes))
	if c.PaddingSent == before.PaddingSent {
		t.Fatalf("%d probes while paused wrote no padding", c.Probes-before.Probes)
	}
	th.set(0)
	start := time.Now()
	// The video starting is the scenario's end; the climb to 720p is
	// TestCongestionPausedRecovers' (it cost 2 s more here).
	waitFor(t, 30*time.Second, "a keyframe after the link freed", func() bool {
		s, _ := v.snapshot()
		return len(s) > len(sizes)
	})
	t.Logf("first keyframe %v after the link freed", time.Since(start))
}
