package cluster_test

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/starling-rtc/starling/client"
	"github.com/starling-rtc/starling/protocol"
)

// TestAdminCommandsFromNodeWithoutParticipants: GET /v1/rooms/{room} and
// .../participants/{id} answer from any node, and docs/cluster.md says
// kick, mute and update of a remote participant are sent to its node. The
// same participant URL must then take PATCH, POST .../mute and DELETE on
// a node with no part of the room, as docs/admin-api.md shows them, not
// answer 404 "no room" to what GET just showed.
func TestAdminCommandsFromNodeWithoutParticipants(t *testing.T) {
	parallel(t)
	srvs := startCluster(t, 3, nil)
	alice := join(t, srvs[0], "far-admin", "alice")
	bob := join(t, srvs[1], "far-admin", "bob")
	seeEachOther(t, alice, bob)
	got := map[*client.Client]chan protocol.DataMessage{}
	for _, c := range []*client.Client{alice, bob} {
		ch := make(chan protocol.DataMessage, 8)
		c.OnData(func(m protocol.DataMessage) { ch <- m })
		got[c] = ch
	}
	media := publishMedia(t, alice, false)
	mic := media.published[0].ID
	eventually(t, 15*time.Second, "bob hears of alice's microphone", func() bool {
		return strings.Contains(string(eventsOf(bob, protocol.NotifyTrackPublished)), mic)
	})
	base := srvs[2].BaseURL() + "/v1/rooms/far-admin/participants/" + alice.ParticipantID()
	call := func(method, url, body string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(method, url, strings.NewReader(body))
		if body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := call(http.MethodGet, base, ""); code != 200 {
		t.Fatalf("GET through the third node: %d %s", code, body)
	}

	code, body := call(http.MethodPatch, base, `{"name":"Alice B."}`)
	var p map[string]any
	if code != 200 || json.Unmarshal([]byte(body), &p) != nil || p["name"] != "Alice B." {
		t.Fatalf("PATCH through the third node: %d %s", code, body)
	}
	for _, c := range []*client.Client{alice, bob} {
		eventually(t, 15*time.Second, "participantUpdated with the new name", func() bool {
			return strings.Contains(string(eventsOf(c, protocol.NotifyParticipantUpdated)), "Alice B.")
		})
	}

	if code, body := call(http.MethodPost, base+"/mute", `{"trackId":"TR_none","muted":true}`); code != 404 {
		t.Errorf("mute of a track alice does not publish: %d %s, want 404", code, body)
	}
	if code, body := call(http.MethodPost, base+"/mute", `{"trackId":"`+mic+`","muted":true}`); code != 200 {
		t.Fatalf("mute through the third node: %d %s", code, body)
	}
	eventually(t, 15*time.Second, "bob sees the microphone muted", func() bool {
		return strings.Contains(string(eventsOf(bob, protocol.NotifyTrackUpdated)), `"muted":true`)
	})

	// POST .../data through the third node: to everyone, then to bob only.
	room := srvs[2].BaseURL() + "/v1/rooms/far-admin/data"
	if code, body := call(http.MethodPost, room, `{"payload":"all"}`); code != 200 {
		t.Fatalf("data through the third node: %d %s", code, body)
	}
	if code, body := call(http.MethodPost, room, `{"payload":"bob only","to":["`+bob.ParticipantID()+`"]}`); code != 200 {
		t.Fatalf("data to bob through the third node: %d %s", code, body)
	}
	if code, body := call(http.MethodPost, room, `{"payload":"x","to":["PA_nobody"]}`); code != 404 {
		t.Errorf("data to nobody: %d %s, want 404", code, body)
	}
	for c, want := range map[*client.Client][]string{alice: {"all"}, bob: {"all", "bob only"}} {
		who := map[*client.Client]string{alice: "alice", bob: "bob"}[c]
		for _, w := range want {
			select {
			case m := <-got[c]:
				if m.Payload != w || m.From != "" {
					t.Errorf("%s got data %+v, want %q from the server", who, m, w)
				}
			case <-time.After(15 * time.Second):
				t.Fatalf("%s never got %q", who, w)
			}
		}
	}

	if code, body := call(http.MethodDelete, base, ""); code != 200 {
		t.Fatalf("DELETE through the third node: %d %s", code, body)
	}
	ev, err := alice.WaitEvent(ctxT(t, 15*time.Second), protocol.MethodLeave, nil)
	if err != nil {
		t.Fatalf("alice was not told she was removed: %v", err)
	}
	if !strings.Contains(string(ev.Params), protocol.ReasonKicked) {
		t.Errorf("alice's leave: %s, want %q", ev.Params, protocol.ReasonKicked)
	}
	if code, _ := call(http.MethodDelete, base, ""); code != 404 {
		eventually(t, 15*time.Second, "alice gone from the room state", func() bool {
			code, _ := call(http.MethodDelete, base, "")
			return code == 404
		})
	}
}

// eventsOf is the params of every notification method c got, concatenated.
func eventsOf(c *client.Client, method string) []byte {
	var out []byte
	for _, e := range c.Events() {
		if e.Method == method {
			out = append(out, e.Params...)
		}
	}
	return out
}
