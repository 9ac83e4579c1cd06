package server_test

import (
	"testing"
	"time"

	"github.com/pion/interceptor"
	"github.com/starling-rtc/starling/client"
	"github.com/starling-rtc/starling/protocol"
	"github.com/starling-rtc/starling/sfu"
)

// TestCongestionPausedRecovers: a downlink narrower than the lowest layer
// pauses the track for bandwidth; once it widens, a probe from the paused
// state finds the room and the subscriber gets its top layer back.
//
// A paused track sends nothing but the probes, and their results used to
// be taken only at a feedback 150 ms after a probe's end, which never came:
// the estimate then crept up on the loss cap's 8% steps, and the top layer
// came back after 41-54 s, or not within 60 s (three runs, load 16-20,
// before the fix; 1.7-2.6 s after). The deadline, 30 s, says whether the
// probes count at all, not how fast they work (docs/congestion.md has the
// figures).
func TestCongestionPausedRecovers(t *testing.T) {
	timingTest(t, groupCongestion) // see TestCongestionSwitchesDown
	srv := startServer(t, withBWE)
	th := &throttle{}
	api, err := client.LoopbackAPIWith([]interceptor.Factory{th})
	if err != nil {
		t.Fatal(err)
	}
	slow := join(t, srv, "bwe-pause", "slow", func(o *client.Options) { o.API = api })
	v := watchVideo(slow)
	pub := join(t, srv, "bwe-pause", "camera")
	f := publishSimulcast(t, pub, 1, 2, 6)
	id := f.published.ID
	v.waitHeight(t, 10*time.Second, 720)
	th.set(150_000)
	start := time.Now()
	waitFor(t, 30*time.Second, "the track paused for bandwidth", func() bool {
		u := lastUpdate(slow, id)
		return u.Reason == sfu.ReasonBandwidth && u.Layer == protocol.QualityPaused
	})
	t.Logf("paused %v after the downlink narrowed to 150 kbit/s", time.Since(start))
	th.set(0)
	start = time.Now()
	v.waitHeight(t, 30*time.Second, 720)
	t.Logf("recovered to high %v after the bottleneck was lifted", time.Since(start))
}
