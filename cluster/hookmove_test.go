package cluster_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
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
	t.Parallel()
	const roomName = "hook-move"
	var mu sync.Mutex
	published, unpublished := map[string]int{}, map[string]int{}
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var e webhook.Event
		if json.NewDecoder(r.Body).Decode(&e) == nil && e.Room.Name == roomName && e.Track != nil {
			mu.Lock()
			switch e.Event {
			case webhook.TrackPublished:
				published[e.Track.ID]++
			case webhook.TrackUnpublished:
				unpublished[e.Track.ID]++
			}
			mu.Unlock()
		}
	}))
	t.Cleanup(hook.Close)
	srvs := startCluster(t, 3, func(c *config.Config) {
		withKeys(c)
		c.Webhook.URLs = []string{hook.URL}
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
	count := func() string {
		mu.Lock()
		defer mu.Unlock()
		return fmt.Sprint(published, unpublished)
	}
	eventually(t, 20*time.Second, "track_unpublished is sent for alice's tracks", func() bool {
		mu.Lock()
		defer mu.Unlock()
		for _, id := range ids {
			if unpublished[id] == 0 {
				return false
			}
		}
		return true
	})
	time.Sleep(time.Second) // a late duplicate would come within this
	got := count()
	mu.Lock()
	defer mu.Unlock()
	for _, id := range ids {
		if published[id] != 1 || unpublished[id] != 1 {
			t.Errorf("track %s: track_published %d times, track_unpublished %d times, want once each (published, unpublished: %s)", id, published[id], unpublished[id], got)
		}
	}
}
