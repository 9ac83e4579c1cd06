package cluster_test

import (
	"slices"
	"testing"
	"time"

	"github.com/starling-rtc/starling/cluster"
	"github.com/starling-rtc/starling/config"
	"github.com/starling-rtc/starling/webhook"
)

// unheardID is the id of the node TestNodeKilledBeforeItWasHeard kills: its
// heartbeats are dropped by every node of this process (cluster.NeverHear),
// so no other test's nodes may have it.
const unheardID = "unheard-n2"

// A node killed before any other node heard its first heartbeat, holding a
// room only it had (its participant joined and published, then the node
// was killed), is found gone all the same: it wrote its node key at its
// start (cluster/nodekeys.go), so the others know it exists; it is never
// heard, and once it no longer answers a ping it is declared gone. Its
// track's track_unpublished, its participant's participant_left and the
// room's room_finished are sent once, by live nodes, and its member and
// track keys leave the room state. While it lives it answers pings, and
// nobody declares it gone. Before, no node knew it: its keys stayed for
// good and no webhook was sent (docs/cluster.md, a known gap).
func TestNodeKilledBeforeItWasHeard(t *testing.T) {
	parallelLong(t) // 13-23 s (sched_test.go)
	const roomName = "unheard-lone"
	cluster.NeverHear(unheardID)
	h := newHookLog(t, roomName)
	srvs := startCluster(t, 3, func(c *config.Config) {
		withKeys(c)
		c.Room.ResumeWindow = config.Duration(2 * time.Second)
		if c.Cluster.NodeID == "n2" {
			c.Cluster.NodeID = unheardID
		} else {
			c.Webhook.URLs = []string{h.url} // a dead process sends none; in-process, its rooms would
		}
	})
	eventually(t, 20*time.Second, "n0 and n1 know n2 from its key", func() bool {
		return srvs[0].Cluster().NodeKnown(unheardID) && srvs[1].Cluster().NodeKnown(unheardID)
	})
	alice := join(t, srvs[2], roomName, "alice", token(t, "alice", roomName))
	aliceID, sid := alice.ParticipantID(), alice.LastJoin().Room.SID
	trackID := publishMedia(t, alice, false).published[0].Track.ID
	eventually(t, 20*time.Second, "the room state keeps alice's track", func() bool {
		return slices.Contains(srvs[0].Cluster().StoredTracks(unheardID), trackID)
	})
	for _, s := range srvs[:2] {
		for _, in := range s.Cluster().Nodes() {
			if in.ID == unheardID {
				t.Fatalf("%s heard n2's heartbeat: the test needs a node nobody heard", s.Cluster().ID())
			}
		}
	}

	srvs[2].Abort()
	killed := time.Now()
	eventually(t, 40*time.Second, "track_unpublished is sent for alice's track", func() bool {
		return len(h.of(webhook.TrackUnpublished, aliceID, trackID)) > 0
	})
	t.Logf("track_unpublished %.1f s after the kill", time.Since(killed).Seconds())
	eventually(t, 40*time.Second, "participant_left is sent for alice", func() bool {
		return len(h.of(webhook.ParticipantLeave, aliceID, "")) > 0
	})
	t.Logf("participant_left %.1f s after the kill (resume window 2 s)", time.Since(killed).Seconds())
	finished := func() int { return h.roomFinished(sid) }
	eventually(t, 40*time.Second, "room_finished is sent for alice's room", func() bool { return finished() > 0 })
	eventually(t, 20*time.Second, "the dead node's member, track and node keys are gone", func() bool {
		keys, err := srvs[0].Cluster().RoomKeys(roomName)
		return err == nil && len(keys["member"]) == 0 && len(srvs[0].Cluster().StoredTracks(unheardID)) == 0 &&
			!srvs[0].Cluster().NodeKnown(unheardID) && !srvs[1].Cluster().NodeKnown(unheardID)
	})
	settled(t, h, srvs[:2], roomName)
	if n := len(h.of(webhook.TrackUnpublished, aliceID, trackID)); n != 1 {
		t.Errorf("track_unpublished sent %d times, want once", n)
	}
	if got := h.reasons(aliceID); len(got) != 1 || got[0] != "disconnected" {
		t.Errorf("participant_left for alice: %v, want once, disconnected", got)
	}
	if n := finished(); n != 1 {
		t.Errorf("room_finished sent %d times, want once", n)
	}
}
