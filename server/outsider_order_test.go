package server_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/starling-rtc/starling/auth"
)

// More outsider checks (see outsider_test.go): raw frames and raw JSON,
// against docs/PROTOCOL.md and docs/admin-api.md as written.

// next returns the next frame the socket read.
func (o *outsiderWS) next(t *testing.T) map[string]any {
	t.Helper()
	select {
	case m, ok := <-o.in:
		if !ok {
			t.Fatal("the socket closed")
		}
		return m
	case <-time.After(20 * time.Second):
		t.Fatal("nothing came")
	}
	return nil
}

// until returns the frames read up to and including the response with id.
func (o *outsiderWS) until(t *testing.T, id float64) []map[string]any {
	t.Helper()
	var got []map[string]any
	for {
		m := o.next(t)
		got = append(got, m)
		if m["id"] == id {
			return got
		}
	}
}

func (o *outsiderWS) send(t *testing.T, v any) {
	t.Helper()
	frame, _ := json.Marshal(v)
	if err := o.ws.WriteMessage(websocket.TextMessage, frame); err != nil {
		t.Fatal(err)
	}
}

// TestOutsiderDuplicateJoinResultFirst: docs/auth.md says a second join
// with the same identity replaces the first session; docs/PROTOCOL.md
// ("Order after join") that the join result comes before any
// notification the join causes. The joiner got the trackUnpublished of
// its predecessor's tracks and its participantLeft ("duplicate") before
// its own join result, about a participant its result does not list.
// The others see the predecessor leave; the successor is told nothing of
// it.
func TestOutsiderDuplicateJoinResultFirst(t *testing.T) {
	parallel(t)
	srv := startServer(t, withKeys)
	const room = "dup-order"
	tok := token(t, "same-person", auth.Grants{Room: room}, time.Hour)

	watcher := outsiderDial(t, srv.SignalingURL())
	if _, e := watcher.call(1, "join", map[string]any{"room": room, "name": "watcher", "autoSubscribe": false,
		"token": token(t, "watcher", auth.Grants{Room: room}, time.Hour)}); e != nil {
		t.Fatalf("watcher join: %v", e)
	}
	first := join(t, srv, room, "first", withToken(tok))
	media := publishFake(t, first)
	video := media.track("video").ID
	watcher.waitNote(t, "trackPublished", video) // announced: in the room's tracks

	second := outsiderDial(t, srv.SignalingURL())
	second.send(t, map[string]any{"jsonrpc": "2.0", "id": 1, "method": "join", "params": map[string]any{"room": room, "name": "second", "token": tok}})
	m := second.next(t)
	res, _ := m["result"].(map[string]any)
	if m["id"] != float64(1) || res == nil {
		t.Fatalf("the first frame after join is %v, want the join result", m)
	}
	if others := fmt.Sprint(res["participants"]); strings.Contains(others, first.ParticipantID()) {
		t.Errorf("the join result lists the participant it replaced: %s", others)
	}
	// Whatever the join made the server send to the joiner is queued before
	// the answer to a ping sent now.
	second.send(t, map[string]any{"jsonrpc": "2.0", "id": 2, "method": "ping"})
	for _, f := range second.until(t, 2) {
		if s := fmt.Sprint(f); strings.Contains(s, first.ParticipantID()) || strings.Contains(s, video) {
			t.Errorf("the successor was told about the participant it replaced: %v", f)
		}
	}
	left := watcher.waitNote(t, "participantLeft", first.ParticipantID())
	if p, _ := left["params"].(map[string]any); p["reason"] != "duplicate" {
		t.Errorf("the others saw the replaced participant leave with %v, want reason duplicate", p)
	}
}

// TestOutsiderMutedTrackReason: docs/PROTOCOL.md gives
// subscriptionUpdated's reasons: "subscriber" (the subscriber's own cap or
// pause), "publisher" (the publisher is not sending). docs/admin-api.md:
// a subscriber sees "paused" for a muted video track. A track muted by
// its publisher or the admin API was reported paused with reason
// "subscriber", as if the subscriber had paused it itself.
func TestOutsiderMutedTrackReason(t *testing.T) {
	parallel(t)
	srv := startServer(t, nil)
	const room = "mute-reason"
	pub := join(t, srv, room, "speaker")
	media := publishFake(t, pub)
	video := media.track("video").ID

	sub := outsiderDial(t, srv.SignalingURL())
	res, e := sub.call(1, "join", map[string]any{"room": room, "name": "viewer"})
	if e != nil {
		t.Fatalf("join: %v", e)
	}
	if !strings.Contains(fmt.Sprint(res["participants"]), video) {
		sub.waitNote(t, "trackPublished", video)
	}
	// Auto-subscribed: told what is forwarded (a raw client that does not
	// answer its offers still gets these).
	update := func() map[string]any {
		t.Helper()
		m := sub.waitNote(t, "subscriptionUpdated", video)
		p, _ := m["params"].(map[string]any)
		return p
	}
	if p := update(); p["layer"] == "paused" {
		t.Fatalf("paused before any mute: %v", p)
	}
	mute := func(muted bool) {
		t.Helper()
		body := fmt.Sprintf(`{"trackId":%q,"muted":%v}`, video, muted)
		req, _ := http.NewRequest(http.MethodPost, "http://"+srv.Addr()+"/v1/rooms/"+room+"/participants/"+pub.ParticipantID()+"/mute", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("admin mute %v: %s", muted, resp.Status)
		}
	}
	mute(true)
	if p := update(); p["layer"] != "paused" || p["reason"] != "publisher" {
		t.Errorf("muted by the admin API: subscriptionUpdated %v, want layer paused, reason publisher", p)
	}
	// The subscriber's own pause on top of it is its own.
	if _, e := sub.call(2, "setSubscription", map[string]any{"trackId": video, "paused": true}); e != nil {
		t.Fatalf("setSubscription: %v", e)
	}
	if p := update(); p["layer"] != "paused" || p["reason"] != "subscriber" {
		t.Errorf("paused by the subscriber too: subscriptionUpdated %v, want reason subscriber", p)
	}
	if _, e := sub.call(3, "setSubscription", map[string]any{"trackId": video, "paused": false}); e != nil {
		t.Fatalf("setSubscription: %v", e)
	}
	if p := update(); p["layer"] != "paused" || p["reason"] != "publisher" {
		t.Errorf("unpaused by the subscriber, still muted: subscriptionUpdated %v, want reason publisher", p)
	}
	mute(false)
	if p := update(); p["layer"] == "paused" {
		t.Errorf("unmuted: subscriptionUpdated %v, want a layer", p)
	}
}

// TestOutsiderSingleNodeListing: docs/admin-api.md, GET /v1/nodes lists
// each node with startedAt and lastSeen (unix ms); a single node lists
// itself as "local". It said it started, and was last seen, in 1970.
func TestOutsiderSingleNodeListing(t *testing.T) {
	parallel(t)
	before := time.Now().Add(-time.Second).UnixMilli()
	srv := startServer(t, nil)
	resp, err := http.Get("http://" + srv.Addr() + "/v1/nodes")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct {
		Nodes []map[string]any `json:"nodes"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil || len(body.Nodes) != 1 {
		t.Fatalf("GET /v1/nodes: %v %v", body, err)
	}
	n := body.Nodes[0]
	now := float64(time.Now().Add(time.Second).UnixMilli())
	started, _ := n["startedAt"].(float64)
	seen, _ := n["lastSeen"].(float64)
	if n["id"] != "local" || n["self"] != true {
		t.Errorf("the node is %v, want id local, self true", n)
	}
	if started < float64(before) || started > now {
		t.Errorf("startedAt %v, want when the server started (unix ms)", n["startedAt"])
	}
	if seen < started || seen > now {
		t.Errorf("lastSeen %v, want now (unix ms)", n["lastSeen"])
	}
}

// TestOutsiderFixedLimitCodes: docs/limits.md said going over a limit gets
// 413 or 429, then listed the fixed protocol limits; over several of those
// the server answers -32602 (a name too long, too many media sections: the
// request is malformed) or 401 (a token too long), which is right for what
// they are. The document now gives each fixed limit's answer.
func TestOutsiderFixedLimitCodes(t *testing.T) {
	parallel(t)
	srv := startServer(t, withKeys)
	tok := token(t, "lim", auth.Grants{Room: "lim"}, time.Hour)
	o := outsiderDial(t, srv.SignalingURL())
	code := func(id int, method string, params map[string]any) float64 {
		t.Helper()
		_, e := o.call(id, method, params)
		if e == nil {
			return 0
		}
		c, _ := e["code"].(float64)
		return c
	}
	for i, c := range []struct {
		what   string
		params map[string]any
		want   float64
	}{
		{"room of 129 characters", map[string]any{"room": strings.Repeat("é", 129), "token": tok}, -32602},
		{"name of 257 characters", map[string]any{"room": "lim", "name": strings.Repeat("é", 257), "token": tok}, -32602},
		{"metadata over 16 KiB", map[string]any{"room": "lim", "metadata": strings.Repeat("m", 16385), "token": tok}, 413},
		{"token over 8 KiB", map[string]any{"room": "lim", "token": strings.Repeat("t", 8193)}, 401},
	} {
		if got := code(i+1, "join", c.params); got != c.want {
			t.Errorf("join with a %s: code %v, want %v", c.what, got, c.want)
		}
	}
	// docs/PROTOCOL.md: white space around a room name is dropped; the
	// result names the room joined (the server did so, the document said
	// nothing).
	res, e := o.call(10, "join", map[string]any{"room": " \u00a0lim\t", "name": strings.Repeat("é", 256), "metadata": strings.Repeat("é", 8192), "token": tok})
	if e != nil {
		t.Fatalf("join at the limits: %v", e)
	}
	if room, _ := res["room"].(map[string]any); room["name"] != "lim" {
		t.Errorf("join of \" \u00a0lim\\t\": the result's room %v, want lim", res["room"])
	}
	ids := make([]string, 257)
	for i := range ids {
		ids[i] = fmt.Sprint("TR_", i)
	}
	if got := code(11, "subscribe", map[string]any{"trackIds": ids}); got != 413 {
		t.Errorf("subscribe with 257 track ids: code %v, want 413", got)
	}
	sdp := "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n"
	for i := range 65 {
		sdp += fmt.Sprintf("m=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\na=mid:%d\r\n", i)
	}
	if got := code(12, "offer", map[string]any{"sdp": sdp, "tracks": []any{}}); got != -32602 {
		t.Errorf("offer with 65 media sections: code %v, want -32602", got)
	}
}
