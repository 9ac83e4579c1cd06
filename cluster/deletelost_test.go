package cluster_test

import (
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

	srvs[2].Cluster().LoseCloseAnswer()
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
	finished := func() (n int) {
		h.mu.Lock()
		defer h.mu.Unlock()
		for _, e := range h.events {
			if e.Event == webhook.RoomFinished && e.Room.SID == sid {
				n++
			}
		}
		return n
	}
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
