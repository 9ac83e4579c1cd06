package cluster_test

import (
	"testing"
	"time"

	"github.com/starling-rtc/starling/config"
)

// The first room of a fresh two-node cluster, with congestion control on
// as in the binary's defaults: b publishes on one node, a joins on the
// other and publishes too, and each gets the other's audio and video
// (issue 14; the aiortc version of this is server/aiortc_cluster_test.go).
func TestFirstRoomMediaFreshCluster(t *testing.T) {
	parallelLong(t) // 13-23 s (sched_test.go)
	for round := 0; round < 2; round++ {
		srvs := startCluster(t, 2, func(c *config.Config) { c.RTC.CongestionControl = true })
		b := join(t, srvs[1], "first", "b")
		rb := countMedia(b)
		start := time.Now()
		publishMedia(t, b, true)
		a := join(t, srvs[0], "first", "a")
		ra := countMedia(a)
		publishMedia(t, a, true)
		eventually(t, 30*time.Second, "a (n0) and b (n1) get each other's audio and video", func() bool {
			return ra.count(b.ParticipantID(), "audio") >= 25 && ra.count(b.ParticipantID(), "video") >= 15 &&
				rb.count(a.ParticipantID(), "audio") >= 25 && rb.count(a.ParticipantID(), "video") >= 15
		})
		t.Logf("round %d: media both ways %v after b published", round, time.Since(start))
		a.Close()
		b.Close()
	}
}
