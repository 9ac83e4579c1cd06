package cluster_test

import (
	"testing"
	"time"

	"github.com/starling-rtc/starling/config"
	"github.com/starling-rtc/starling/internal/testutil"
	"github.com/starling-rtc/starling/recorder"
)

// cuttableBus returns a tune for the nodes whose route ports are ports
// that routes them to each other through proxies that can be cut and
// restored (and advertises the proxies: no direct route beside them).
func cuttableBus(t testing.TB, ports []int, tune func(*config.Config)) ([]*cutProxy, func(*config.Config)) {
	proxies := make([]*cutProxy, len(ports))
	for i, p := range ports {
		proxies[i] = newCutProxy(t, "127.0.0.1:"+itoa(p))
	}
	return proxies, func(c *config.Config) {
		tune(c)
		c.Cluster.Routes = nil
		for i, p := range ports {
			if "127.0.0.1:"+itoa(p) != c.Cluster.Listen {
				c.Cluster.Routes = append(c.Cluster.Routes, "nats://127.0.0.1:"+itoa(proxies[i].port()))
			} else {
				c.Cluster.Advertise = "127.0.0.1:" + itoa(proxies[i].port())
			}
		}
	}
}

// The node that takes an auto recording over tries again while the store
// is unavailable. n0 records the room; it is killed while the bus between
// the two others is cut, so n1's takeover finds a store without quorum
// (and no majority of nodes) for longer than a change waits for it. The
// link comes back: n1 records the room on, continuing n0's recording. It
// used to try once, when it noticed n0 gone, and leave the room
// unrecorded for good.
func TestAutoRecordTakeoverRetriesStore(t *testing.T) {
	parallelLongest(t)
	testutil.TestMedia(t) // skips before the cluster starts when ffmpeg is missing
	const storeWait = 3 * time.Second
	var proxies []*cutProxy
	srvs := startClusterOn(t, 3, func(ports []int) func(*config.Config) {
		var tune func(*config.Config)
		proxies, tune = cuttableBus(t, ports, func(c *config.Config) {
			c.Recordings.Dir = t.TempDir()
			c.Recordings.AutoRecord = []string{"auto-*"}
			c.Cluster.StoreWait = config.Duration(storeWait)
		})
		return tune
	})
	for _, s := range srvs {
		eventually(t, 20*time.Second, "every node lists 3 nodes", func() bool { return len(s.Cluster().Nodes()) == 3 })
	}
	const roomName = "auto-retry"
	// n0's publisher first: n0 claims the room and records it.
	p0 := join(t, srvs[0], roomName, "pub0")
	publishMedia(t, p0, true)
	var first recorder.Info
	eventually(t, 60*time.Second, "n0 records the room", func() bool {
		in, ok := runningRecording(srvs[0], roomName)
		first = in
		return ok && in.Tracks == 2
	})
	p1 := join(t, srvs[1], roomName, "pub1")
	seeEachOther(t, p0, p1)
	publishMedia(t, p1, true)
	eventually(t, 60*time.Second, "n0's recording holds n1's tracks too", func() bool {
		in, ok := srvs[0].Recorder().Get(first.ID)
		return ok && in.Tracks == 4
	})

	// n0 dies and the bus between n1 and n2 is cut: n1's takeover meets a
	// store with one replica of three up.
	for _, p := range proxies {
		p.setCut(true)
	}
	srvs[0].Abort()
	eventually(t, 30*time.Second, "n1 sees n0 and n2 gone", func() bool { return len(srvs[1].Cluster().Nodes()) == 1 })
	// The store stays out of reach well past n1's first try (storeWait,
	// plus a request's own 5 s): the outage is the scenario, nothing is
	// judged on its length.
	time.Sleep(2 * (storeWait + 5*time.Second))
	if _, ok := runningRecording(srvs[1], roomName); ok {
		t.Fatal("n1 records the room while the store has no quorum")
	}
	for _, p := range proxies {
		p.setCut(false)
	}
	var second recorder.Info
	eventually(t, 90*time.Second, "n1 records the room again once the store is back", func() bool {
		in, ok := runningRecording(srvs[1], roomName)
		second = in
		return ok
	})
	if !second.Auto || second.Continues != first.ID {
		t.Fatalf("n1's recording %+v, want an auto recording that continues %s", second, first.ID)
	}
	eventually(t, 60*time.Second, "n1's recording holds pub1's video and audio, 30 frames each", func() bool {
		frames := map[string]int{}
		for _, tr := range recordingManifest(t, srvs[1].Recorder(), second.ID).Tracks {
			frames[tr.ParticipantName+" "+tr.Kind] += tr.Frames
		}
		return frames["pub1 audio"] >= 30 && frames["pub1 video"] >= 30
	})
}
