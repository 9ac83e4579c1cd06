package server_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/starling-rtc/starling/auth"
	"github.com/starling-rtc/starling/config"
)

// Checks written as an outsider reads the documents: what is checked is
// read as raw frames and raw JSON maps (no protocol/ types, no client/
// code), so a mistake in the shared types cannot hide on both sides. Go
// clients only stand in for the other participants (a publisher whose
// media exists).

// outsiderWS is a bare socket that keeps every frame it reads.
type outsiderWS struct {
	t  *testing.T
	ws *websocket.Conn
	in chan map[string]any
}

func outsiderDial(t *testing.T, url string) *outsiderWS {
	t.Helper()
	ws, _, err := (&websocket.Dialer{HandshakeTimeout: 10 * time.Second}).Dial(url, nil)
	if err != nil {
		t.Fatalf("dial %s: %v", url, err)
	}
	o := &outsiderWS{t: t, ws: ws, in: make(chan map[string]any, 1024)}
	go func() {
		defer close(o.in)
		for {
			_, data, err := ws.ReadMessage()
			if err != nil {
				return
			}
			var m map[string]any
			if json.Unmarshal(data, &m) != nil {
				m = map[string]any{"undecodable": string(data)}
			}
			o.in <- m
		}
	}()
	t.Cleanup(func() { _ = ws.Close() })
	return o
}

// call sends a request with id 1 (the tests make one call per socket
// unless told) and returns the response's result or error object.
func (o *outsiderWS) call(id int, method string, params map[string]any) (result, errObj map[string]any) {
	o.t.Helper()
	frame, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": id, "method": method, "params": params})
	if err := o.ws.WriteMessage(websocket.TextMessage, frame); err != nil {
		o.t.Fatalf("%s: %v", method, err)
	}
	deadline := time.After(20 * time.Second)
	for {
		select {
		case m, ok := <-o.in:
			if !ok {
				o.t.Fatalf("%s: the socket closed before the response", method)
			}
			if _, isNote := m["method"]; isNote {
				continue
			}
			if got, _ := m["id"].(float64); int(got) != id {
				o.t.Fatalf("%s: response with id %v, want %d: %v", method, m["id"], id, m)
			}
			r, _ := m["result"].(map[string]any)
			e, _ := m["error"].(map[string]any)
			return r, e
		case <-deadline:
			o.t.Fatalf("%s: no response", method)
		}
	}
}

// waitNote waits for a notification method whose params mention text;
// what comes before it is dropped.
func (o *outsiderWS) waitNote(t *testing.T, method, text string) map[string]any {
	t.Helper()
	deadline := time.After(20 * time.Second)
	for {
		select {
		case m, ok := <-o.in:
			if !ok {
				t.Fatalf("the socket closed before %s", method)
			}
			if m["method"] == method && strings.Contains(fmt.Sprint(m["params"]), text) {
				return m
			}
		case <-deadline:
			t.Fatalf("no %s mentioning %q", method, text)
		}
	}
}

// turnEntry is the first iceServers entry with a turn: URL and credentials.
func turnEntry(res map[string]any) map[string]any {
	list, _ := res["iceServers"].([]any)
	for _, e := range list {
		s, _ := e.(map[string]any)
		urls, _ := s["urls"].([]any)
		for _, u := range urls {
			if us, _ := u.(string); strings.HasPrefix(us, "turn:") && s["username"] != "" && s["credential"] != "" {
				return s
			}
		}
	}
	return nil
}

// TestOutsiderResumeKeepsTURNServer: docs/turn.md says every join
// result's iceServers carries a TURN entry made for the participant. A
// resume is a join too, and a client behind a firewall that resumes
// (and restarts ICE, or builds new connections) needs the relay as much
// as at its first join.
func TestOutsiderResumeKeepsTURNServer(t *testing.T) {
	parallel(t)
	srv := startServer(t, func(c *config.Config) {
		c.TURN.Enabled = true
		c.TURN.Port = 0
		c.Room.ResumeWindow = config.Duration(30 * time.Second) // a busy machine may be slow to resume
	})
	first := outsiderDial(t, srv.SignalingURL())
	res, e := first.call(1, "join", map[string]any{"room": "turn-resume", "name": "behind-a-firewall"})
	if e != nil {
		t.Fatalf("join: %v", e)
	}
	joined := turnEntry(res)
	if joined == nil {
		t.Fatalf("the join result has no TURN entry: %v", res["iceServers"])
	}
	token, _ := res["resumeToken"].(string)
	me, _ := res["participant"].(map[string]any)
	_ = first.ws.Close() // the socket drops

	again := outsiderDial(t, srv.SignalingURL())
	res, e = again.call(1, "join", map[string]any{"room": "turn-resume", "resume": token})
	if e != nil {
		t.Fatalf("resume: %v", e)
	}
	if p, _ := res["participant"].(map[string]any); p["id"] != me["id"] {
		t.Fatalf("the resume made participant %v, want %v", p["id"], me["id"])
	}
	resumed := turnEntry(res)
	if resumed == nil {
		t.Fatalf("the resume result's iceServers have no TURN entry (the join's had %v): %v", joined, res["iceServers"])
	}
	// The credentials are made for the same identity: <expiry>:<identity>.
	_, jid, _ := strings.Cut(joined["username"].(string), ":")
	_, rid, _ := strings.Cut(resumed["username"].(string), ":")
	if jid != rid {
		t.Errorf("TURN username for %q after the resume, %q at the join", rid, jid)
	}
}

// TestOutsiderRequestsWithoutID: docs/PROTOCOL.md "Errors for
// notifications": a request sent without an id gets -32600 with id null,
// an unknown method -32601, and ping without an id is a keepalive that
// gets no answer (the next response is the next request's).
func TestOutsiderRequestsWithoutID(t *testing.T) {
	parallel(t)
	srv := startServer(t, nil)
	o := outsiderDial(t, srv.SignalingURL())
	next := func() map[string]any {
		t.Helper()
		select {
		case m := <-o.in:
			return m
		case <-time.After(20 * time.Second):
			t.Fatal("no answer")
		}
		return nil
	}
	send := func(frame string) {
		t.Helper()
		if err := o.ws.WriteMessage(websocket.TextMessage, []byte(frame)); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range []struct {
		frame string
		code  float64
	}{
		{`{"jsonrpc":"2.0","method":"join","params":{"room":"r"}}`, -32600},
		{`{"jsonrpc":"2.0","method":"mute","params":{"trackId":"TR_x","muted":true}}`, -32600},
		{`{"jsonrpc":"2.0","method":"leave","params":{}}`, -32600},
		{`{"jsonrpc":"2.0","method":"frobnicate","params":{}}`, -32601},
		{`{"jsonrpc":"2.0","method":"answer","params":{"sdp":"v=0"}}`, 409}, // before join
	} {
		send(c.frame)
		m := next()
		e, _ := m["error"].(map[string]any)
		if id, has := m["id"]; !has || id != nil || e == nil || e["code"] != c.code {
			t.Errorf("%s answered %v, want an error %v with id null", c.frame, m, c.code)
		}
	}
	send(`{"jsonrpc":"2.0","method":"ping"}`)
	send(`{"jsonrpc":"2.0","id":"after","method":"ping"}`)
	if m := next(); m["id"] != "after" || m["result"] == nil {
		t.Errorf("after a ping without an id, the next frame is %v, want the answer to the ping with id \"after\"", m)
	}
}

// TestGStreamerWHIPAsDocumented runs the gst_whip.py command docs/whip.md
// shows, as shown (the URL pointed at the test server; --local-ip and a
// short --seconds added, see docs/whip.md on libnice and loopback): the
// WHIP publisher must join the room.
// docJSON returns the ```json blocks of a document, each decoded.
// jsonPaths lists the field paths of v ("a.b", arrays as "a[]").
// assertSameFields: every field the document's example shows is one the
// server sends, at the same place.
// TestOutsiderDocJSONExamples: every JSON example of docs/ parses, and the
// objects the server sends look as the documents show them: the admin
// API's participant, a recording, the TURN iceServers entry; the token
// payload of docs/auth.md, signed as it is shown, joins.
// docMethods lists the methods of the table under heading in
// docs/PROTOCOL.md (first column, each `name`; "a / b" rows give both).
// TestOutsiderDocumentedMethodsAreKnown: every request and client
// notification in docs/PROTOCOL.md's tables is a method the server knows:
// before join, a request gets 409 "join first" (join and ping succeed), a
// notification 409 with id null; never -32601.
// TestOutsiderDocLinks: the README and docs/ point a reader only at files
// the repository has: every relative Markdown link, and every mention of
// the protocol document, resolves (shared/PROTOCOL.md is the team's
// notes, outside the repository; docs/PROTOCOL.md is what readers get).
// TestOutsiderErrorCodes: the error codes PROTOCOL.md promises for tokens,
// grants and ids, read as raw numbers: 401 without or with a bad token, 403
// for a token of another room and for subscribing without canSubscribe,
// 404 for a track of another room (ids of other rooms reveal nothing) and
// for an unknown resume token, 409 for a request before join; each with a
// message in words.
func TestOutsiderErrorCodes(t *testing.T) {
	parallel(t)
	srv := startServer(t, withKeys)
	no := false
	pub := join(t, srv, "codes-a", "pub", withToken(token(t, "pub", auth.Grants{Room: "codes-a"}, time.Hour)))
	media := publishFake(t, pub)
	other := media.track("video").ID

	check := func(what string, e map[string]any, code float64) {
		t.Helper()
		if e == nil || e["code"] != code {
			t.Errorf("%s: error %v, want code %v", what, e, code)
			return
		}
		if msg, _ := e["message"].(string); len(msg) < 8 {
			t.Errorf("%s: the message %q does not say what was wrong", what, msg)
		}
	}
	o := outsiderDial(t, srv.SignalingURL())
	_, e := o.call(1, "subscribe", map[string]any{"trackIds": []string{other}})
	check("subscribe before join", e, 409)
	_, e = o.call(2, "join", map[string]any{"room": "codes-b"})
	check("join without a token", e, 401)
	_, e = o.call(3, "join", map[string]any{"room": "codes-b", "token": "not.a.jwt"})
	check("join with a malformed token", e, 401)
	_, e = o.call(4, "join", map[string]any{"room": "codes-b", "token": token(t, "x", auth.Grants{Room: "codes-a"}, time.Hour)})
	check("join with a token for another room", e, 403)
	_, e = o.call(5, "join", map[string]any{"room": "codes-b", "resume": "RS_unknown"})
	check("resume with an unknown token", e, 404)
	if _, e = o.call(6, "join", map[string]any{"room": "codes-b", "token": token(t, "b", auth.Grants{Room: "codes-b"}, time.Hour)}); e != nil {
		t.Fatalf("join with a good token: %v", e)
	}
	_, e = o.call(7, "subscribe", map[string]any{"trackIds": []string{other}})
	check("subscribe to a track of another room", e, 404)
	_, e = o.call(8, "setSubscription", map[string]any{"trackId": other, "paused": true})
	check("setSubscription of a track of another room", e, 404)
	_, e = o.call(9, "mute", map[string]any{"trackId": other, "muted": true})
	check("mute of a track of another room", e, 404)

	viewer := outsiderDial(t, srv.SignalingURL())
	tok := token(t, "viewer", auth.Grants{Room: "codes-a", CanSubscribe: &no}, time.Hour)
	res, e := viewer.call(1, "join", map[string]any{"room": "codes-a", "token": tok})
	if e != nil {
		t.Fatalf("join without canSubscribe: %v", e)
	}
	// The track is known to the viewer once announced: in the join result
	// or by trackPublished (after its first packet).
	if !strings.Contains(fmt.Sprint(res["participants"]), other) {
		viewer.waitNote(t, "trackPublished", other)
	}
	_, e = viewer.call(2, "subscribe", map[string]any{"trackIds": []string{other}})
	check("subscribe without canSubscribe", e, 403)
	_, e = viewer.call(3, "setSubscription", map[string]any{"trackId": other, "quality": "low"})
	check("setSubscription without canSubscribe", e, 403)
	_, e = viewer.call(4, "mute", map[string]any{"trackId": other, "muted": true})
	check("mute of another participant's track", e, 403)
}

// TestOutsiderAPIRefusesOtherSites: on an open server the admin and
// recording APIs trust loopback clients, and a browser on the server's
// machine is one. A web page of another site may make it post to them
// without a CORS preflight (a POST without Content-Type, or text/plain):
// it sent data messages into a room and started a recording. Such
// requests carry the page's Origin; like the signaling WebSocket and
// WHIP/WHEP (docs/security.md), the APIs refuse origins not allowed (403);
// the server's own pages and clients sending no Origin (curl, backends)
// are served.
func TestOutsiderAPIRefusesOtherSites(t *testing.T) {
	parallel(t)
	srv := startServer(t, func(c *config.Config) { c.Recordings.Dir = t.TempDir() })
	join(t, srv, "csrf", "someone")
	post := func(path, origin, ctype, body string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, "http://"+srv.Addr()+path, strings.NewReader(body))
		if origin != "" {
			req.Header.Set("Origin", origin)
		}
		if ctype != "" {
			req.Header.Set("Content-Type", ctype)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	for _, c := range []struct{ path, ctype, body string }{
		{"/v1/rooms/csrf/data", "", `{"payload":"from another site"}`},
		{"/v1/rooms/csrf/recordings", "text/plain", `{}`},
	} {
		if code, body := post(c.path, "http://evil.example", c.ctype, c.body); code != http.StatusForbidden {
			t.Errorf("POST %s from a page of http://evil.example: %d %s, want 403", c.path, code, body)
		}
	}
	if code, body := post("/v1/rooms/csrf/data", "http://"+srv.Addr(), "", `{"payload":"own page"}`); code != http.StatusOK {
		t.Errorf("POST .../data from the server's own page: %d %s", code, body)
	}
	if code, body := post("/v1/rooms/csrf/data", "", "application/json", `{"payload":"curl"}`); code != http.StatusOK {
		t.Errorf("POST .../data without Origin: %d %s", code, body)
	}
}
