package cluster_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/starling-rtc/starling/config"
	"github.com/starling-rtc/starling/webhook"
)

// A node killed with SIGKILL sends no more webhooks, yet its participants
// leave: alice, who never resumes, is purged after the resume window, and
// carol is replaced by a join of her identity on another node. Each gets
// its participant_left once, from a live node (reason "disconnected" and
// "duplicate"); before, neither was ever sent, and a backend counting who
// is in the room by the webhooks kept them in it for good. (The killed
// node, in-process here, sends its webhooks nowhere, as a dead process.)
func TestWebhookLeftForKilledNodesParticipants(t *testing.T) {
	t.Parallel()
	const roomName = "dead-hooks"
	var mu sync.Mutex
	left := map[string][]string{} // participant id -> reasons
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var e webhook.Event
		if json.NewDecoder(r.Body).Decode(&e) == nil && e.Room.Name == roomName && e.Event == webhook.ParticipantLeave && e.Participant != nil {
			mu.Lock()
			left[e.Participant.ID] = append(left[e.Participant.ID], e.Reason)
			mu.Unlock()
		}
	}))
	t.Cleanup(hook.Close)
	reasons := func(id string) []string { mu.Lock(); defer mu.Unlock(); return append([]string(nil), left[id]...) }
	srvs := startCluster(t, 3, func(c *config.Config) {
		withKeys(c)
		c.Room.ResumeWindow = config.Duration(2 * time.Second)
		if c.Cluster.NodeID != "n2" { // the node to kill sends nothing: a dead process would not
			c.Webhook.URLs = []string{hook.URL}
		}
	})
	bob := join(t, srvs[0], roomName, "bob", token(t, "bob", roomName))
	alice := join(t, srvs[2], roomName, "alice", token(t, "alice", roomName))
	carol := join(t, srvs[2], roomName, "carol", token(t, "carol", roomName))
	seeEachOther(t, bob, alice, carol)
	aliceID, carolID := alice.ParticipantID(), carol.ParticipantID()

	srvs[2].Abort()
	carol2 := join(t, srvs[1], roomName, "carol", token(t, "carol", roomName))
	eventually(t, 30*time.Second, "participant_left for alice (purged) and carol (replaced)", func() bool {
		return len(reasons(aliceID)) > 0 && len(reasons(carolID)) > 0
	})
	eventually(t, 20*time.Second, "bob sees alice and carol's first session leave", func() bool {
		return !knows(bob, aliceID) && !knows(bob, carolID) && knows(bob, carol2.ParticipantID())
	})
	time.Sleep(2 * time.Second) // a duplicate from another node would come within this
	if got := fmt.Sprint(reasons(aliceID)); got != "[disconnected]" {
		t.Errorf("participant_left for alice: %s, want once, disconnected", got)
	}
	if got := fmt.Sprint(reasons(carolID)); got != "[duplicate]" {
		t.Errorf("participant_left for carol's first session: %s, want once, duplicate", got)
	}
}
