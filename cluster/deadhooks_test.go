package cluster_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/starling-rtc/starling/auth"
	"github.com/starling-rtc/starling/client"
	"github.com/starling-rtc/starling/config"
	"github.com/starling-rtc/starling/protocol"
	"github.com/starling-rtc/starling/server"
)

// deadNodeCluster starts three nodes with keys and a resume window of
// window; all but n2, the node the test kills, send webhooks to h (a dead
// process sends none: in-process, n2's rooms would go on sending them).
func deadNodeCluster(t *testing.T, h *hookLog, window time.Duration) []*server.Server {
	t.Helper()
	srvs := startCluster(t, 3, func(c *config.Config) {
		withKeys(c)
		c.Room.ResumeWindow = config.Duration(window)
		if c.Cluster.NodeID != "n2" {
			c.Webhook.URLs = []string{h.url}
		}
	})
	eventually(t, 30*time.Second, "the room state store is on 3 current replicas", func() bool {
		ok, _ := srvs[0].Cluster().StoreReplicated(3)
		return ok
	})
	return srvs
}

// A node killed with SIGKILL sends no more webhooks, yet its participants
// leave: alice, who never resumes, is purged after the resume window, and
// carol is replaced by a join of her identity on another node. Each gets
// its participant_left once, from a live node (reason "disconnected" and
// "duplicate"); before, neither was ever sent, and a backend counting who
// is in the room by the webhooks kept them in it for good.
func TestWebhookLeftForKilledNodesParticipants(t *testing.T) {
	parallelLong(t) // 13-23 s (sched_test.go)
	const roomName = "dead-hooks"
	h := newHookLog(t, roomName)
	srvs := deadNodeCluster(t, h, 2*time.Second)
	bob := join(t, srvs[0], roomName, "bob", token(t, "bob", roomName))
	alice := join(t, srvs[2], roomName, "alice", token(t, "alice", roomName))
	carol := join(t, srvs[2], roomName, "carol", token(t, "carol", roomName))
	seeEachOther(t, bob, alice, carol)
	aliceID, carolID := alice.ParticipantID(), carol.ParticipantID()

	srvs[2].Abort()
	carol2 := join(t, srvs[1], roomName, "carol", token(t, "carol", roomName))
	eventually(t, 30*time.Second, "n0 and n1 see n2 gone", func() bool {
		return len(srvs[0].Cluster().Nodes()) == 2 && len(srvs[1].Cluster().Nodes()) == 2
	})
	for deadline := time.Now().Add(30 * time.Second); len(h.reasons(aliceID)) == 0 || len(h.reasons(carolID)) == 0; time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("after 30 s, participant_left for alice (purged): %v, for carol (replaced): %v", h.reasons(aliceID), h.reasons(carolID))
		}
	}
	eventually(t, 20*time.Second, "bob sees alice and carol's first session leave", func() bool {
		return !knows(bob, aliceID) && !knows(bob, carolID) && knows(bob, carol2.ParticipantID())
	})
	settled(t, h, srvs[:2], roomName) // a duplicate from n0 or n1 would be before its marker
	if got := fmt.Sprint(h.reasons(aliceID)); got != "[disconnected]" {
		t.Errorf("participant_left for alice: %s, want once, disconnected", got)
	}
	if got := fmt.Sprint(h.reasons(carolID)); got != "[duplicate]" {
		t.Errorf("participant_left for carol's first session: %s, want once, duplicate", got)
	}
	// "duplicate" when the dead node is seen dead at once; the stub may go
	// as "disconnected" first when that takes the heartbeat expiry.
	t.Logf("bob was told carol's first session left with %q", leftReason(bob, carolID))
}

// A kick through the admin API of a participant whose node was killed
// (so still in the room, waiting to resume) takes effect at once, as on
// one node: the others are told it left ("kicked"), no node lists it, its
// resume token is refused, and participant_left is sent once. Before, the
// kick went to the dead node, answered 200 and did nothing: the
// participant stayed for the resume window and could resume through
// another node despite the kick.
func TestKickOfKilledNodesParticipant(t *testing.T) {
	parallel(t)
	const roomName = "dead-kick"
	h := newHookLog(t, roomName)
	srvs := deadNodeCluster(t, h, 30*time.Second)
	bob := join(t, srvs[0], roomName, "bob", token(t, "bob", roomName))
	alice := join(t, srvs[2], roomName, "alice", token(t, "alice", roomName))
	seeEachOther(t, bob, alice)
	aliceID, used := alice.ParticipantID(), alice.ResumeToken()

	srvs[2].Abort()
	// Through n0, which has a stub of alice. (Through n1, without a part of
	// the room, the room's state is read from the store, which may not
	// answer for a few seconds if n2 led its stream: docs/cluster.md.)
	var answer map[string]any
	if code := httpJSONAuth(t, "DELETE", srvs[0].BaseURL()+"/v1/rooms/"+roomName+"/participants/"+aliceID, adminToken(t), nil, &answer); code != http.StatusOK {
		t.Fatalf("kick through n0: %d %v", code, answer)
	}
	eventually(t, 15*time.Second, "bob is told alice left", func() bool { return !knows(bob, aliceID) })
	t.Logf("bob was told alice left with %q", leftReason(bob, aliceID)) // "kicked"; see above
	for _, s := range srvs[:2] {
		var detail struct {
			Participants []struct{ ID string } `json:"participants"`
		}
		eventually(t, 30*time.Second, s.Cluster().ID()+" lists bob alone", func() bool {
			return adminGet(t, s.BaseURL()+"/v1/rooms/"+roomName, &detail) == http.StatusOK && len(detail.Participants) == 1
		})
	}
	if err := storeResume(t, srvs[0], roomName, used); err == nil || err.Code != protocol.CodeNotFound {
		t.Errorf("alice's resume after the kick: %v, want 404", err)
	}
	eventually(t, 15*time.Second, "participant_left is sent for alice", func() bool { return len(h.reasons(aliceID)) > 0 })
	settled(t, h, srvs[:2], roomName)
	if got := fmt.Sprint(h.reasons(aliceID)); got != "[kicked]" {
		t.Errorf("participant_left for alice: %s, want once, kicked", got)
	}
}

// settled waits until every webhook the live nodes srvs sent so far has
// arrived (hookLog.delivered, a marker participant per node): a duplicate
// would be in the log then.
func settled(t *testing.T, h *hookLog, srvs []*server.Server, roomName string) {
	t.Helper()
	for i, s := range srvs {
		h.delivered(t, s, roomName, fmt.Sprintf("marker-%d", i))
	}
}

// leftReason is the reason c was last given for participant id's leave.
func leftReason(c *client.Client, id string) string {
	reason := ""
	for _, e := range c.Events() {
		var p protocol.ParticipantLeftParams
		if e.Method == protocol.NotifyParticipantLeft && json.Unmarshal(e.Params, &p) == nil && p.ParticipantID == id {
			reason = p.Reason
		}
	}
	return reason
}

// adminToken is an admin token for every room (withKeys).
func adminToken(t *testing.T) string {
	t.Helper()
	tok, err := auth.Issue(testAPIKey, testAPISecret, auth.Claims{RegisteredClaims: jwt.RegisteredClaims{Subject: "ops"}, Grants: auth.Grants{Admin: true}}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}
