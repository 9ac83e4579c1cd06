package cluster_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/starling-rtc/starling/auth"
	"github.com/starling-rtc/starling/client"
	"github.com/starling-rtc/starling/config"
	"github.com/starling-rtc/starling/internal/testutil"
	"github.com/starling-rtc/starling/protocol"
	"github.com/starling-rtc/starling/webhook"
)

// DELETE /v1/rooms/{room} whose compare-and-set on the room's key landed
// while its answer was lost (a timeout: the store's leader changed, the bus
// was slow) answers 200 all the same: the retry recognises its own write
// (cluster/closeroom.go), closes every node's part and sends room_finished
// once. Before, the retry found the room closed and answered 404, and no
// node sent room_finished or deleted the closed key.
func TestAdminDeleteAnswerLost(t *testing.T) {
	parallel(t)
	const roomName = "delete-lost"
	h := newHookLog(t, roomName)
	srvs := startCluster(t, 3, func(c *config.Config) {
		withKeys(c)
		c.Webhook.URLs = []string{h.url}
		c.Room.EmptyTimeout = config.Duration(time.Minute) // the delete must not wait for it
	})
	tok, err := auth.Issue(testAPIKey, testAPISecret, auth.Claims{RegisteredClaims: jwt.RegisteredClaims{Subject: "ops"}, Grants: auth.Grants{Admin: true}}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	alice := join(t, srvs[0], roomName, "alice", token(t, "alice", roomName))
	bob := join(t, srvs[1], roomName, "bob", token(t, "bob", roomName))
	seeEachOther(t, alice, bob)
	sid := alice.LastJoin().Room.SID

	srvs[2].Cluster().LoseCloseAnswer(nil)
	if code := httpJSONAuth(t, "DELETE", srvs[2].BaseURL()+"/v1/rooms/"+roomName, tok, nil, nil); code != http.StatusOK {
		t.Fatalf("DELETE through n2, its write landed and its answer lost: %d, want 200", code)
	}
	for name, c := range map[string]*client.Client{"alice": alice, "bob": bob} {
		if reason := testutil.LeaveReason(t, c, name); reason != protocol.ReasonRoomClosed {
			t.Fatalf("%s's leave reason %q, want %q", name, reason, protocol.ReasonRoomClosed)
		}
	}
	eventually(t, 15*time.Second, "every node answers 404 for the deleted room", func() bool {
		for _, srv := range srvs {
			var v any
			if adminGet(t, srv.BaseURL()+"/v1/rooms/"+roomName, &v) != http.StatusNotFound {
				return false
			}
		}
		return true
	})
	finished := func() int { return h.roomFinished(sid) }
	eventually(t, 15*time.Second, "room_finished is sent for the deleted room", func() bool { return finished() > 0 })
	eventually(t, 15*time.Second, "the deleted room's key is gone", func() bool {
		keys, err := srvs[0].Cluster().RoomKeys(roomName)
		return err == nil && len(keys["room"]) == 0
	})
	settled(t, h, srvs, roomName) // a duplicate would come before the markers' joins
	if n := finished(); n != 1 {
		t.Errorf("room_finished sent %d times for the deleted room, want once", n)
	}
}

// The same, and a join through the deleting node opens a new room in the
// deleted one's place before the delete tries again: the new room's key
// names the delete that closed the one it replaced (prevClosedBy), so the
// delete knows its write landed, answers 200 and finishes the deleted
// instance (its parts close, room_finished once), while the new room and
// its participant stay. Before, the retry answered 404 and no room_finished
// was sent for the deleted room.
func TestAdminDeleteAnswerLostRoomReplaced(t *testing.T) {
	parallel(t)
	const roomName = "delete-lost-new"
	h := newHookLog(t, roomName)
	srvs := startCluster(t, 3, func(c *config.Config) {
		withKeys(c)
		c.Webhook.URLs = []string{h.url}
		c.Room.EmptyTimeout = config.Duration(time.Minute)
	})
	tok, err := auth.Issue(testAPIKey, testAPISecret, auth.Claims{RegisteredClaims: jwt.RegisteredClaims{Subject: "ops"}, Grants: auth.Grants{Admin: true}}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	alice := join(t, srvs[0], roomName, "alice", token(t, "alice", roomName))
	bob := join(t, srvs[1], roomName, "bob", token(t, "bob", roomName))
	seeEachOther(t, alice, bob)
	sid := alice.LastJoin().Room.SID

	// erin joins through n2 while its delete's answer is lost.
	erinTok, err := auth.Issue(testAPIKey, testAPISecret, auth.Claims{RegisteredClaims: jwt.RegisteredClaims{Subject: "erin"}, Grants: auth.Grants{Room: roomName}}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	api, err := client.LoopbackAPI()
	if err != nil {
		t.Fatal(err)
	}
	var erin *client.Client
	var erinErr error
	srvs[2].Cluster().LoseCloseAnswer(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		erin, erinErr = client.Dial(ctx, srvs[2].SignalingURL(), roomName, client.Options{Name: "erin", Token: erinTok, API: api})
	})
	code := httpJSONAuth(t, "DELETE", srvs[2].BaseURL()+"/v1/rooms/"+roomName, tok, nil, nil)
	if erinErr != nil {
		t.Fatalf("erin's join during the delete: %v", erinErr)
	}
	t.Cleanup(erin.Close)
	if code != http.StatusOK {
		t.Fatalf("DELETE through n2, its write landed, its answer lost and a new room opened: %d, want 200", code)
	}
	newSID := erin.LastJoin().Room.SID
	if newSID == sid || newSID == "" {
		t.Fatalf("erin joined room %q, want a new room in place of the deleted %s", newSID, sid)
	}
	for name, c := range map[string]*client.Client{"alice": alice, "bob": bob} {
		if reason := testutil.LeaveReason(t, c, name); reason != protocol.ReasonRoomClosed {
			t.Fatalf("%s's leave reason %q, want %q", name, reason, protocol.ReasonRoomClosed)
		}
	}
	count := func(event, sid string) (n int) {
		h.mu.Lock()
		defer h.mu.Unlock()
		for _, e := range h.events {
			if e.Event == event && e.Room.SID == sid {
				n++
			}
		}
		return n
	}
	eventually(t, 15*time.Second, "room_finished is sent for the deleted room", func() bool { return count(webhook.RoomFinished, sid) > 0 })
	settled(t, h, srvs, roomName)
	if n := count(webhook.RoomFinished, sid); n != 1 {
		t.Errorf("room_finished sent %d times for the deleted room, want once", n)
	}
	if n := count(webhook.RoomFinished, newSID); n != 0 {
		t.Errorf("room_finished sent for the new room %s", newSID)
	}
	if got, ok := srvs[0].Cluster().RoomSID(roomName); !ok || got != newSID {
		t.Errorf("the room's sid is %q (open %v), want erin's new room %s", got, ok, newSID)
	}
	if r := srvs[2].Rooms().Room(roomName); r == nil || r.SID() != newSID || r.Participant(erin.ParticipantID()) == nil {
		t.Error("erin is no longer in the new room on n2")
	}
}
