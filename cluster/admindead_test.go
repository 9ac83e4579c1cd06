package cluster_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/starling-rtc/starling/protocol"
)

// An admin's PATCH or mute of a participant whose node was killed, through
// the node where another participant of the room is (a stub of it there)
// and through a node without a part of the room (asked of the members'
// nodes): the participant waits to resume through another node, and the
// command cannot reach it. Before, both answered 200 and changed nothing
// (the command went to the dead node; PATCH showed the participant
// unchanged). Now they are 409, saying so. A name the admin set before the
// kill is kept when the participant resumes through another node (it is
// in its member key now: before, the takeover started it with the name it
// joined with), and once it resumed a PATCH through any node applies.
func TestAdminCommandToDeadNodesParticipant(t *testing.T) {
	parallel(t)
	srvs := failoverCluster(t)
	const rm = "admin-dead"
	alice := join(t, srvs[0], rm, "alice")
	bob := join(t, srvs[1], rm, "bob")
	seeEachOther(t, alice, bob)
	pub := publishMedia(t, alice, false)
	aID, trackID, token := alice.ParticipantID(), pub.published[0].Track.ID, alice.ResumeToken()
	eventually(t, 15*time.Second, "n1 knows alice's track", func() bool {
		r := srvs[1].Rooms().Room(rm)
		p := r.Participant(aID)
		return p != nil && len(p.Info().Tracks) == 1
	})

	patch := func(i int, name string) (int, protocol.Error, map[string]any) {
		var raw json.RawMessage
		code := httpJSON(t, "PATCH", srvs[i].BaseURL()+"/v1/rooms/"+rm+"/participants/"+aID, map[string]any{"name": name}, &raw)
		var e protocol.Error
		var p map[string]any
		_ = json.Unmarshal(raw, &e)
		_ = json.Unmarshal(raw, &p)
		return code, e, p
	}
	if code, _, p := patch(1, "Alice Two"); code != http.StatusOK || p["name"] != "Alice Two" {
		t.Errorf("PATCH through n1 while n0 is up: %d %v, want 200 with the new name", code, p)
	}
	if _, err := bob.WaitEvent(ctxT(t, 15*time.Second), protocol.NotifyParticipantUpdated, func(raw json.RawMessage) bool {
		var pp protocol.ParticipantParams
		return json.Unmarshal(raw, &pp) == nil && pp.Participant.ID == aID && pp.Participant.Name == "Alice Two"
	}); err != nil {
		t.Fatalf("bob was not told alice's new name: %v", err)
	}
	// The name reaches alice's member key (read by the takeover below).
	eventually(t, 15*time.Second, "alice's member key has her new name", func() bool {
		return strings.Contains(srvs[1].Cluster().MemberEntry(rm, aID), `"name":"Alice Two"`)
	})

	srvs[0].Abort()
	for _, i := range []int{1, 2} {
		code, e, _ := patch(i, "Alice Three")
		// 503 while the store elects a new leader (n0 may have led it):
		// try again, as the answer says; the answer itself is the wait.
		for deadline := time.Now().Add(30 * time.Second); code == http.StatusServiceUnavailable && time.Now().Before(deadline); {
			time.Sleep(250 * time.Millisecond) // a client's pause before it tries again
			code, e, _ = patch(i, "Alice Three")
		}
		if code != http.StatusConflict || !strings.Contains(e.Message, "is gone") {
			t.Errorf("PATCH through n%d of alice, her node killed: %d %q, want 409 saying her node is gone", i, code, e.Message)
		}
	}
	var e protocol.Error
	code := httpJSON(t, "POST", srvs[1].BaseURL()+"/v1/rooms/"+rm+"/participants/"+aID+"/mute", map[string]any{"trackId": trackID, "muted": true}, &e)
	// 404 once n1 found n0 gone (its tracks ended then).
	if code != http.StatusConflict && code != http.StatusNotFound {
		t.Errorf("mute through n1 of alice's track, her node killed: %d %q, want 409 (or 404 once her tracks ended)", code, e.Message)
	}

	// She resumes through n1: her new name stands, and a PATCH applies.
	if e := storeResume(t, srvs[1], rm, token); e != nil {
		t.Fatalf("alice's resume through n1: %v", e)
	}
	var got map[string]any
	if code := httpJSON(t, "GET", srvs[2].BaseURL()+"/v1/rooms/"+rm+"/participants/"+aID, nil, &got); code != http.StatusOK || got["name"] != "Alice Two" {
		t.Errorf("alice after her resume through n1: %d name %v, want Alice Two (the admin's)", code, got["name"])
	}
	if code, e, p := patch(2, "Alice Four"); code != http.StatusOK || p["name"] != "Alice Four" {
		t.Errorf("PATCH through n2 after her resume: %d %q %v", code, e.Message, p)
	}
	if sawLeave(bob, aID) {
		t.Error("bob was told alice left")
	}
}
