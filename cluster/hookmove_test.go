package cluster_test

import (
	"slices"
	"testing"
	"time"

	"github.com/starling-rtc/starling/config"
	"github.com/starling-rtc/starling/webhook"
)

// A track that moves with its publisher to another node keeps its id and
// is the same track for the room (nobody is told it ended or began), so
// its webhooks are too: one track_published and one track_unpublished per
// track id, as on one node. Before, checked from outside with three
// processes, the node a participant moved to (a drain, or a resume through
// it before its old node was known dead) sent track_published again for
// each of its tracks when their media came back there.
func TestWebhookTrackPublishedOnceAcrossMove(t *testing.T) {
	parallel(t)
	const roomName = "hook-move"
	h := newHookLog(t, roomName)
	srvs := startCluster(t, 3, func(c *config.Config) {
		withKeys(c)
		c.Webhook.URLs = []string{h.url}
		c.Room.ResumeWindow = config.Duration(20 * time.Second)
	})
	alice := join(t, srvs[0], roomName, "alice", token(t, "alice", roomName), withNodes(srvs[1]))
	bob := join(t, srvs[2], roomName, "bob", token(t, "bob", roomName))
	rb := countMedia(bob)
	seeEachOther(t, alice, bob)
	publishMedia(t, alice, true)
	aID := alice.ParticipantID()
	eventually(t, 20*time.Second, "bob receives alice's audio and video", func() bool {
		return rb.count(aID, "audio") > 25 && rb.count(aID, "video") > 10
	})
	ids := publishedIDs(alice)
	if left := srvs[0].Drain(ctxT(t, 20*time.Second)); left != 0 {
		t.Fatalf("%d participants still on the drained node", left)
	}
	eventually(t, 20*time.Second, "alice resumed through n1 with the same track ids", func() bool {
		return resumedCount(alice) == 1 && alice.URL() == srvs[1].SignalingURL() && slices.Equal(publishedIDs(alice), ids)
	})
	va := rb.count(aID, "audio")
	eventually(t, 20*time.Second, "bob hears alice through n1", func() bool { return rb.count(aID, "audio") > va+50 })
	_ = alice.Leave(ctxT(t, 10*time.Second))
	eventually(t, 20*time.Second, "track_unpublished is sent for alice's tracks", func() bool {
		for _, id := range ids {
			if len(h.of(webhook.TrackUnpublished, aID, id)) == 0 {
				return false
			}
		}
		return true
	})
	// A late duplicate from n1 (the node alice moved to) or n2 would come
	// before a marker's participant_joined sent after their claims are idle.
	settled(t, h, srvs[1:], roomName)
	for _, id := range ids {
		pub, unpub := len(h.of(webhook.TrackPublished, aID, id)), len(h.of(webhook.TrackUnpublished, aID, id))
		if pub != 1 || unpub != 1 {
			t.Errorf("track %s: track_published %d times, track_unpublished %d times, want once each", id, pub, unpub)
		}
	}
}
