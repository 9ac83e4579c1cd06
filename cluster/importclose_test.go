package cluster_test

import (
	"testing"
	"time"

	"github.com/starling-rtc/starling/config"
)

// TestRoomClosedEndsImports: when a room's part on a node closes (its
// last participant there left), the node's imports of the other nodes'
// tracks end and the origin stops sending them. Seen from outside (WHIP
// to node a, WHEP from node b, the viewer gone): node b had no room, no
// participant, yet starling_cluster_relayed_tracks{direction="in"} stayed
// at 2 for good and its relay_bytes_total{direction="in"} kept growing
// while the publisher published: a kept sending the media to b.
func TestRoomClosedEndsImports(t *testing.T) {
	parallel(t)
	srvs := startCluster(t, 2, func(c *config.Config) { c.Room.EmptyTimeout = config.Duration(100 * time.Millisecond) })
	const room = "import-close"
	alice := join(t, srvs[0], room, "alice")
	bob := join(t, srvs[1], room, "bob")
	got := countMedia(bob)
	seeEachOther(t, alice, bob)
	publishMedia(t, alice, true)
	aID := alice.ParticipantID()
	eventually(t, 20*time.Second, "alice's audio and video reach bob on n1", func() bool {
		return got.count(aID, "audio") >= 10 && got.count(aID, "video") >= 10
	})
	if s := srvs[1].Cluster().RelayStats(); s.Imports != 2 {
		t.Fatalf("n1 imports %d tracks while bob watches, want 2", s.Imports)
	}

	if err := bob.Leave(ctxT(t, 10*time.Second)); err != nil {
		t.Fatalf("bob leaves: %v", err)
	}
	eventually(t, 10*time.Second, "the room's part on n1 closes", func() bool { return srvs[1].Rooms().Room(room) == nil })
	eventually(t, 5*time.Second, "n1 imports nothing and n0 exports nothing once the room closed on n1", func() bool {
		return srvs[1].Cluster().RelayStats().Imports == 0 && srvs[0].Cluster().RelayStats().Exports == 0
	})
}
