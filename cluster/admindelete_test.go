package cluster_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/starling-rtc/starling/auth"
	"github.com/starling-rtc/starling/client"
	"github.com/starling-rtc/starling/config"
	"github.com/starling-rtc/starling/internal/testutil"
	"github.com/starling-rtc/starling/protocol"
	"github.com/starling-rtc/starling/recorder"
	"github.com/starling-rtc/starling/webhook"
)

// DELETE /v1/rooms/{room} through a node without a part of the room closes
// the room for the whole cluster at once, as on one node, however long the
// empty timeout: the recording of a node whose part holds no participant
// (only the recording keeps it open) stops, every node answers 404 for the
// room, room_finished is sent once, and a join right after opens a new
// room (a new sid, room_started again). Before, the nodes' parts closed
// but the room stayed in the cluster's state for the empty timeout: the
// recording went on, GET answered 200 with no participants, room_finished
// came only after the timeout, and a join within it went back into the
// deleted room, same sid, no room_started.
func TestAdminDeleteClosesRoomAtOnce(t *testing.T) {
	parallel(t)
	const roomName = "deleted"
	var mu sync.Mutex
	hooks := map[string]int{} // event + " " + sid
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var e webhook.Event
		if json.NewDecoder(r.Body).Decode(&e) == nil && e.Room.Name == roomName {
			mu.Lock()
			hooks[e.Event+" "+e.Room.SID]++
			mu.Unlock()
		}
	}))
	t.Cleanup(hook.Close)
	hooked := func(ev, sid string) int { mu.Lock(); defer mu.Unlock(); return hooks[ev+" "+sid] }
	srvs := startCluster(t, 3, func(c *config.Config) {
		withKeys(c)
		c.Webhook.URLs = []string{hook.URL}
		c.Recordings.Dir = t.TempDir()
		c.Room.EmptyTimeout = config.Duration(time.Minute) // the delete must not wait for it
	})
	tok, err := auth.Issue(testAPIKey, testAPISecret, auth.Claims{RegisteredClaims: jwt.RegisteredClaims{Subject: "ops"}, Grants: auth.Grants{Admin: true}}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	no := false
	watcher := join(t, srvs[0], roomName, "watcher", token(t, "watcher", roomName), func(o *client.Options) { o.AutoSubscribe = &no })
	pub := join(t, srvs[1], roomName, "pub", token(t, "pub", roomName))
	seeEachOther(t, watcher, pub)
	sid := pub.LastJoin().Room.SID
	publishMedia(t, pub, true)
	var info recorder.Info
	if code := httpJSONAuth(t, "POST", srvs[0].BaseURL()+"/v1/rooms/"+roomName+"/recordings", tok, map[string]any{}, &info); code != http.StatusCreated {
		t.Fatalf("start on n0: %d", code)
	}
	eventually(t, 20*time.Second, "n0's recording holds pub's two tracks", func() bool {
		in, ok := srvs[0].Recorder().Get(info.ID)
		return ok && in.Tracks == 2
	})
	if err := watcher.Leave(ctxT(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "n0's part of the room has only pub's stub left", func() bool {
		r := srvs[0].Rooms().Room(roomName)
		if r == nil {
			return false
		}
		n, _ := r.Counts()
		return n == 1
	})

	if code := httpJSONAuth(t, "DELETE", srvs[2].BaseURL()+"/v1/rooms/"+roomName, tok, nil, nil); code != http.StatusOK {
		t.Fatalf("DELETE through n2: %d", code)
	}
	if reason := testutil.LeaveReason(t, pub, "pub"); reason != protocol.ReasonRoomClosed {
		t.Fatalf("pub's leave reason %q, want %q", reason, protocol.ReasonRoomClosed)
	}
	// Well within the minute of empty timeout.
	eventually(t, 15*time.Second, "n0's recording stops and its part of the room closes", func() bool {
		in, _ := srvs[0].Recorder().Get(info.ID)
		return in.Status == "finished" && srvs[0].Rooms().Room(roomName) == nil
	})
	eventually(t, 15*time.Second, "every node answers 404 for the deleted room", func() bool {
		for _, srv := range srvs {
			var v any
			if adminGet(t, srv.BaseURL()+"/v1/rooms/"+roomName, &v) != http.StatusNotFound {
				return false
			}
		}
		return true
	})
	eventually(t, 15*time.Second, "room_finished is sent", func() bool { return hooked(webhook.RoomFinished, sid) > 0 })

	again := join(t, srvs[1], roomName, "again", token(t, "again", roomName))
	if got := again.LastJoin().Room.SID; got == sid || got == "" {
		t.Fatalf("a join after the delete got sid %q, want a new room (the deleted one was %s)", got, sid)
	}
	if len(again.LastJoin().Participants) != 0 {
		t.Errorf("a join after the delete lists %v, want nobody", again.LastJoin().Participants)
	}
	newSID := again.LastJoin().Room.SID
	eventually(t, 15*time.Second, "room_started is sent for the new room", func() bool { return hooked(webhook.RoomStarted, newSID) == 1 })
	if n := hooked(webhook.RoomFinished, sid); n != 1 {
		t.Errorf("room_finished sent %d times for the deleted room, want 1", n)
	}
	if n := hooked(webhook.RoomStarted, sid); n != 1 {
		t.Errorf("room_started sent %d times for the deleted room, want 1", n)
	}
}
