package cluster_test

import (
	"encoding/json"
	"slices"
	"testing"
	"time"

	"github.com/starling-rtc/starling/client"
	"github.com/starling-rtc/starling/protocol"
)

// publishLayers follows what viewers on other nodes want, as on one node
// (issue 14: "the union of what viewers on every node want"): alice's only
// viewer, bob, is on another node. When he caps her camera to low, she is
// told to send only low; when he asks for high again, to send every layer,
// and he gets high. Before, checked from outside with three processes, an
// edge's wish changed what crossed the relay but never what the publisher
// was told: her publishLayers stayed as they were when the relay began (a
// browser then kept encoding layers nobody watched, and, told low once by
// a change on her own node, never sent high again for the viewer on
// another node who asked for it).
func TestPublishLayersFollowRemoteViewers(t *testing.T) {
	parallelLong(t) // 13-23 s (sched_test.go)
	srvs := startCluster(t, 2, nil)
	const room = "pub-layers"
	alice := join(t, srvs[0], room, "alice")
	bob := join(t, srvs[1], room, "bob")
	seeEachOther(t, alice, bob)
	cam := publishSimulcastCam(t, alice, "cam")
	got := countByTrack(bob)
	eventually(t, 20*time.Second, "bob receives alice's camera", func() bool { return got.count(cam) > 10 })

	set := func(q string) {
		if err := bob.Call(ctxT(t, 10*time.Second), protocol.MethodSetSubscription, protocol.SetSubscriptionParams{TrackID: cam, Quality: &q}, nil); err != nil {
			t.Fatalf("setSubscription %s: %v", q, err)
		}
	}
	set(protocol.QualityLow)
	eventually(t, 15*time.Second, "alice is told to send only low", func() bool {
		return slices.Equal(lastPublishLayers(alice, cam), []string{protocol.QualityLow})
	})
	set(protocol.QualityHigh)
	eventually(t, 15*time.Second, "alice is told to send every layer again", func() bool {
		return slices.Equal(lastPublishLayers(alice, cam), []string{protocol.QualityLow, protocol.QualityMedium, protocol.QualityHigh})
	})
	eventually(t, 15*time.Second, "bob is told he gets high", func() bool { return lastLayer(bob, cam) == protocol.QualityHigh })
}

// lastPublishLayers is the layers c was last told to send of a track.
func lastPublishLayers(c *client.Client, track string) []string {
	var active []string
	for _, e := range c.Events() {
		var p protocol.PublishLayersParams
		if e.Method == protocol.NotifyPublishLayers && json.Unmarshal(e.Params, &p) == nil && p.TrackID == track {
			active = p.Active
		}
	}
	return active
}

// lastLayer is the layer c was last told it receives of a track.
func lastLayer(c *client.Client, track string) string {
	layer := ""
	for _, e := range c.Events() {
		var p protocol.SubscriptionUpdatedParams
		if e.Method == protocol.NotifySubscriptionUpdated && json.Unmarshal(e.Params, &p) == nil && p.TrackID == track {
			layer = p.Layer
		}
	}
	return layer
}
