package cluster_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/starling-rtc/starling/admin"
	"github.com/starling-rtc/starling/auth"
	"github.com/starling-rtc/starling/client"
	"github.com/starling-rtc/starling/config"
	"github.com/starling-rtc/starling/internal/testutil"
	"github.com/starling-rtc/starling/protocol"
	"github.com/starling-rtc/starling/server"
)

// knows reports whether c has been told participant id is in its room
// (join result or participantJoined) and not told it left.
func knows(c *client.Client, id string) bool {
	in := false
	for _, p := range c.LastJoin().Participants {
		if p.ID == id {
			in = true
		}
	}
	for _, e := range c.Events() {
		switch e.Method {
		case protocol.NotifyParticipantJoined:
			var p protocol.ParticipantParams
			if json.Unmarshal(e.Params, &p) == nil && p.Participant.ID == id {
				in = true
			}
		case protocol.NotifyParticipantLeft:
			var p protocol.ParticipantLeftParams
			if json.Unmarshal(e.Params, &p) == nil && p.ParticipantID == id {
				in = false
			}
		}
	}
	return in
}

// seeEachOther waits until every client knows every other one.
func seeEachOther(t *testing.T, cs ...*client.Client) {
	t.Helper()
	eventually(t, 15*time.Second, "every participant sees every other one", func() bool {
		for _, a := range cs {
			for _, b := range cs {
				if a != b && !knows(a, b.ParticipantID()) {
					return false
				}
			}
		}
		return true
	})
}

// hasParam matches an event whose params hold value at key.
var hasParam = testutil.HasParam

// Participants on three nodes see each other, exchange data messages, and
// the admin API of any node lists and kicks them.
func TestRoomSpansNodes(t *testing.T) {
	parallel(t)
	srvs := startCluster(t, 3, nil)
	a := join(t, srvs[0], "span", "a")
	b := join(t, srvs[1], "span", "b")
	c := join(t, srvs[2], "span", "c")
	seeEachOther(t, a, b, c)
	if a.LastJoin().Room.SID != b.LastJoin().Room.SID || b.LastJoin().Room.SID != c.LastJoin().Room.SID {
		t.Fatalf("one room, three sids: %s %s %s", a.LastJoin().Room.SID, b.LastJoin().Room.SID, c.LastJoin().Room.SID)
	}

	got := make(chan protocol.DataMessage, 4)
	for _, x := range []*client.Client{b, c} {
		x.OnData(func(m protocol.DataMessage) { got <- m })
	}
	if err := a.SendData(ctxT(t, 10*time.Second), "hello from n0"); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		select {
		case m := <-got:
			if m.From != a.ParticipantID() || m.Payload != "hello from n0" {
				t.Fatalf("data message %+v", m)
			}
		case <-time.After(15 * time.Second):
			t.Fatalf("%d of 2 remote participants got the data message", i)
		}
	}

	// The admin API of n1 lists all three and kicks c (on n2).
	resp, err := http.Get(srvs[1].BaseURL() + "/v1/rooms/span")
	if err != nil {
		t.Fatal(err)
	}
	var detail admin.RoomDetail
	_ = json.NewDecoder(resp.Body).Decode(&detail)
	resp.Body.Close()
	if len(detail.Participants) != 3 {
		t.Fatalf("n1 lists %d participants, want 3: %+v", len(detail.Participants), detail)
	}
	req, _ := http.NewRequest(http.MethodDelete, srvs[1].BaseURL()+"/v1/rooms/span/participants/"+c.ParticipantID(), nil)
	resp, err = http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("kick through n1: %v %v", err, resp)
	}
	resp.Body.Close()
	if reason := testutil.LeaveReason(t, c, "c (on n2) kicked through n1"); reason != protocol.ReasonKicked {
		t.Errorf("leave reason %q, want kicked", reason)
	}
	for _, x := range []*client.Client{a, b} {
		if _, err := x.WaitEvent(ctxT(t, 10*time.Second), protocol.NotifyParticipantLeft, hasParam("participantId", c.ParticipantID())); err != nil {
			t.Fatalf("not told c left: %v", err)
		}
	}
}

// Three participants joining a new room at the same moment on three nodes
// make one room (one sid) in which everyone sees everyone.
func TestSimultaneousJoinsMakeOneRoom(t *testing.T) {
	parallel(t)
	srvs := startCluster(t, 3, nil)
	cs := make([]*client.Client, 3)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range srvs {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			<-start
			cs[i] = joinNoFatal(t, srvs[i], "race", "p"+itoa(i))
		}(i)
	}
	close(start)
	wg.Wait()
	for _, c := range cs {
		if c == nil {
			t.Fatal("a join failed")
		}
	}
	sid := cs[0].LastJoin().Room.SID
	for _, c := range cs {
		if c.LastJoin().Room.SID != sid {
			t.Fatalf("split room: sids %s and %s", sid, c.LastJoin().Room.SID)
		}
	}
	seeEachOther(t, cs...)
}

func joinNoFatal(t testing.TB, srv *server.Server, room, name string) *client.Client {
	api, err := client.LoopbackAPI()
	if err != nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, srv.SignalingURL(), room, client.Options{Name: name, API: api})
	if err != nil {
		t.Errorf("%s joins %s: %v", name, room, err)
		return nil
	}
	t.Cleanup(c.Close)
	return c
}

// A node whose own participants all left does not close the room for the
// others; the room closes once the last participant anywhere has left.
func TestRoomClosesOnlyWhenLastLeaves(t *testing.T) {
	parallel(t)
	srvs := startCluster(t, 2, nil)
	a := join(t, srvs[0], "last", "a")
	b := join(t, srvs[1], "last", "b")
	seeEachOther(t, a, b)
	sid := a.LastJoin().Room.SID
	if err := a.Leave(ctxT(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "n0's part of the room closes", func() bool { return srvs[0].Rooms().Room("last") == nil })
	time.Sleep(3 * time.Duration(300*time.Millisecond)) // well past the empty timeout: the room must live on
	a2 := join(t, srvs[0], "last", "a2")
	if a2.LastJoin().Room.SID != sid {
		t.Fatalf("the room was closed while b was still in it on n1: sid %s, was %s", a2.LastJoin().Room.SID, sid)
	}
	seeEachOther(t, a2, b)
	a2.Close()
	if err := b.Leave(ctxT(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	eventually(t, 15*time.Second, "the room closes in the cluster after its last participant left", func() bool {
		_, open := srvs[0].Cluster().RoomSID("last")
		return !open
	})
	c := join(t, srvs[1], "last", "c")
	if c.LastJoin().Room.SID == sid {
		t.Fatal("a room created after the close has the old sid")
	}
}

const (
	testAPIKey    = "APItest"
	testAPISecret = "test-secret-test-secret-test-secret!"
)

func withKeys(c *config.Config) { c.Keys = map[string]string{testAPIKey: testAPISecret} }

func token(t testing.TB, identity, room string) func(*client.Options) {
	t.Helper()
	tok, err := auth.Issue(testAPIKey, testAPISecret, auth.Claims{RegisteredClaims: jwt.RegisteredClaims{Subject: identity}, Grants: auth.Grants{Room: room}}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return func(o *client.Options) { o.Token = tok }
}

// A second join with an identity connected on another node replaces the
// first there (leave "duplicate").
func TestDuplicateIdentityAcrossNodes(t *testing.T) {
	parallel(t)
	srvs := startCluster(t, 3, withKeys)
	watcher := join(t, srvs[2], "dup", "watcher", token(t, "watcher", "dup"))
	first := join(t, srvs[0], "dup", "first", token(t, "carol", "dup"))
	seeEachOther(t, watcher, first)
	second := join(t, srvs[1], "dup", "second", token(t, "carol", "dup"))
	if reason := testutil.LeaveReason(t, first, "first session (n0)"); reason != protocol.ReasonDuplicate {
		t.Fatalf("leave reason %q, want %q", reason, protocol.ReasonDuplicate)
	}
	eventually(t, 10*time.Second, "the watcher sees the second session and not the first", func() bool {
		return knows(watcher, second.ParticipantID()) && !knows(watcher, first.ParticipantID())
	})
}

// Max participants holds for the room across nodes.
func TestMaxParticipantsAcrossNodes(t *testing.T) {
	parallel(t)
	srvs := startCluster(t, 3, func(c *config.Config) { c.Limits.MaxParticipants = 2 })
	join(t, srvs[0], "full", "a")
	join(t, srvs[1], "full", "b")
	api, _ := client.LoopbackAPI()
	_, err := client.Dial(ctxT(t, 15*time.Second), srvs[2].SignalingURL(), "full", client.Options{Name: "c", API: api})
	var perr *protocol.Error
	if !errors.As(err, &perr) || perr.Code != protocol.CodeTooLarge {
		t.Fatalf("third join on n2: %v, want error %d (room full)", err, protocol.CodeTooLarge)
	}
}

// The admin API of a node without a part of the room lists the room's
// participants on the other nodes and closes it everywhere.
func TestAdminFromNodeWithoutParticipants(t *testing.T) {
	parallel(t)
	srvs := startCluster(t, 3, nil)
	a := join(t, srvs[0], "far", "a")
	b := join(t, srvs[1], "far", "b")
	seeEachOther(t, a, b)
	// Asked once, not polled: n2's replica of the room state may lag a
	// moment behind, and the listing must still show both (cluster/current.go).
	resp, err := http.Get(srvs[2].BaseURL() + "/v1/rooms/far")
	if err != nil {
		t.Fatal(err)
	}
	var detail admin.RoomDetail
	_ = json.NewDecoder(resp.Body).Decode(&detail)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || len(detail.Participants) != 2 || detail.SID != a.LastJoin().Room.SID {
		t.Fatalf("n2 answers %s with %+v, want the 2 participants of sid %s", resp.Status, detail, a.LastJoin().Room.SID)
	}
	// And the cluster's room list, also asked once, counts both.
	var list admin.RoomList
	if code := httpJSON(t, "GET", srvs[2].BaseURL()+"/v1/rooms", nil, &list); code != http.StatusOK {
		t.Fatalf("GET /v1/rooms through n2: %d", code)
	}
	if len(list.Rooms) != 1 || list.Rooms[0].Name != "far" || list.Rooms[0].NumParticipants != 2 {
		t.Fatalf("n2 lists the rooms %+v, want far with 2 participants", list.Rooms)
	}
	req, _ := http.NewRequest(http.MethodDelete, srvs[2].BaseURL()+"/v1/rooms/far", nil)
	resp, err = http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("DELETE through n2: %v %v", err, resp)
	}
	resp.Body.Close()
	for _, c := range []*client.Client{a, b} {
		if reason := testutil.LeaveReason(t, c, "a client of the closed room"); reason != protocol.ReasonRoomClosed {
			t.Errorf("leave reason %q, want %q", reason, protocol.ReasonRoomClosed)
		}
	}
}
