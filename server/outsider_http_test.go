package server_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"
	"github.com/starling-rtc/starling/auth"
	"github.com/starling-rtc/starling/config"
	"github.com/starling-rtc/starling/internal/testutil"
	"github.com/starling-rtc/starling/protocol"
)

// TestOutsiderAPIWrongMethod: docs/admin-api.md says the API "speaks JSON
// both ways and reports errors as {"code": ..., "message": ...}", and
// docs/recording.md that the recording routes' errors are {"error": ...}.
// A method a path does not serve (PUT on a room, GET on .../mute) got
// Go's plain-text "method not allowed". It gets 405, Allow, and the JSON
// error of its API.
func TestOutsiderAPIWrongMethod(t *testing.T) {
	parallel(t)
	srv := startServer(t, func(c *config.Config) { c.Recordings.Dir = t.TempDir() })
	for _, c := range []struct {
		method, path, allow, field string
	}{
		{http.MethodPut, "/v1/rooms/standup", "DELETE", "message"},
		{http.MethodPost, "/v1/rooms", "GET", "message"},
		{http.MethodDelete, "/v1/nodes", "GET", "message"},
		{http.MethodGet, "/v1/rooms/standup/data", "POST", "message"},
		{http.MethodPost, "/v1/rooms/standup/participants/PA_x", "PATCH", "message"},
		{http.MethodGet, "/v1/rooms/standup/participants/PA_x/mute", "POST", "message"},
		{http.MethodPut, "/v1/rooms/standup/participants/PA_x/mix", "POST", "message"},
		{http.MethodPut, "/v1/rooms/standup/recordings", "POST", "error"},
		{http.MethodPost, "/v1/rooms/standup/recordings/x", "DELETE", "error"},
	} {
		req, _ := http.NewRequest(c.method, "http://"+srv.Addr()+c.path, strings.NewReader("{}"))
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var body map[string]any
		what := c.method + " " + c.path
		if resp.StatusCode != http.StatusMethodNotAllowed {
			t.Errorf("%s: %s %s, want 405", what, resp.Status, b)
			continue
		}
		if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") || json.Unmarshal(b, &body) != nil {
			t.Errorf("%s: a %q body %q, want a JSON error", what, ct, b)
			continue
		}
		if msg, _ := body[c.field].(string); len(msg) < 8 {
			t.Errorf("%s: %s, want %q saying what was wrong", what, b, c.field)
		}
		if c.field == "message" && body["code"] != float64(405) {
			t.Errorf("%s: %s, want code 405", what, b)
		}
		if allow := resp.Header.Get("Allow"); !strings.Contains(allow, c.allow) {
			t.Errorf("%s: Allow %q, want it to list %s", what, allow, c.allow)
		}
	}
}

// withoutLines drops a description's lines that start with one of prefixes.
func withoutLines(sdp string, prefixes ...string) string {
	var keep []string
	for _, l := range strings.Split(sdp, "\r\n") {
		drop := false
		for _, p := range prefixes {
			drop = drop || strings.HasPrefix(l, p)
		}
		if !drop {
			keep = append(keep, l)
		}
	}
	return strings.Join(keep, "\r\n")
}

// Broken descriptions pion used to take in part: no ICE credentials, no
// DTLS fingerprint, (an answer) no media sections.
var brokenSDP = []struct {
	what   string
	mangle func(string) string
}{
	{"without ICE credentials", func(s string) string { return withoutLines(s, "a=ice-ufrag:", "a=ice-pwd:") }},
	{"without a fingerprint", func(s string) string { return withoutLines(s, "a=fingerprint:") }},
	{"without media sections", func(s string) string { return withoutLines(s, "m=", "a=mid:", "c=") }},
}

// TestOutsiderBadSDPThenGood: docs/PROTOCOL.md, "a bad request never ends
// the session". An offer or answer whose SDP parses but lacks the ICE
// credentials or the fingerprint got -32602, and left the connection stuck
// (an answer without media sections was even taken): every later
// publisher offer got "invalid proposed signaling state transition", and
// the good subscriber answer after a bad one got 409 "no subscriber offer
// is pending" (and the participant was dropped at the negotiation
// timeout). After the error, the good offer and answer work. The SDP comes
// from plain pion, standing in for any WebRTC stack.
func TestOutsiderBadSDPThenGood(t *testing.T) {
	parallel(t)
	srv := startServer(t, nil)
	o := outsiderDial(t, srv.SignalingURL())
	if _, e := o.call(1, "join", map[string]any{"room": "bad-sdp", "name": "clumsy"}); e != nil {
		t.Fatalf("join: %v", e)
	}
	offer := o.waitNote(t, "offer", "v=0")
	subOffer, _ := offer["params"].(map[string]any)["sdp"].(string)

	// The subscriber connection: a bad answer, then the good one.
	sub, err := webrtc.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Close() })
	if err := sub.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: subOffer}); err != nil {
		t.Fatal(err)
	}
	answer, err := sub.CreateAnswer(nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := sub.SetLocalDescription(answer); err != nil {
		t.Fatal(err)
	}
	answerWith := func(sdp string, ping float64) map[string]any {
		t.Helper()
		o.send(t, map[string]any{"jsonrpc": "2.0", "method": "answer", "params": map[string]any{"sdp": sdp}})
		o.send(t, map[string]any{"jsonrpc": "2.0", "id": ping, "method": "ping"})
		for _, m := range o.until(t, ping) {
			if e, _ := m["error"].(map[string]any); e != nil && m["id"] == nil {
				return e
			}
		}
		return nil
	}
	for i, b := range brokenSDP {
		if e := answerWith(b.mangle(answer.SDP), float64(10+i)); e == nil || e["code"] != float64(-32602) {
			t.Errorf("an answer %s: %v, want -32602", b.what, e)
		}
	}
	if e := answerWith(answer.SDP, 3); e != nil {
		t.Errorf("the good answer after a bad one: %v", e)
	}

	// The publisher connection: a bad offer, then the good one.
	pub, err := webrtc.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pub.Close() })
	track := testutil.VP8RTPTrack(t)
	if _, err := pub.AddTrack(track); err != nil {
		t.Fatal(err)
	}
	local, err := pub.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := pub.SetLocalDescription(local); err != nil {
		t.Fatal(err)
	}
	tracks := []map[string]any{{"trackId": track.ID(), "source": "camera"}}
	for i, b := range brokenSDP[:2] { // an offer without sections publishes nothing: fine
		_, e := o.call(20+i, "offer", map[string]any{"sdp": b.mangle(local.SDP), "tracks": []any{}})
		if e == nil || e["code"] != float64(-32602) {
			t.Errorf("an offer %s: %v, want -32602", b.what, e)
		}
	}
	res, e := o.call(5, "offer", map[string]any{"sdp": local.SDP, "tracks": tracks})
	if e != nil {
		t.Fatalf("the good offer after a bad one: %v", e)
	}
	if got, _ := res["tracks"].([]any); len(got) != 1 {
		t.Errorf("the good offer published %v, want the one track", res["tracks"])
	}
}

// TestOutsiderRecordingRoutesAsDocumented: docs/recording.md said the
// recording routes' errors are {"error": ...}, yet a request the admin
// check refuses (no token, a token without the record or admin grant) gets
// the admin API's {"code", "message"}; and that a recording's folder is
// named <room>-<UTC start time>, yet the room's name is reduced to
// file-system-safe characters there. The document says both now; the
// server was right (one error form for every refused request under /v1/,
// folder names safe on any disk).
func TestOutsiderRecordingRoutesAsDocumented(t *testing.T) {
	parallel(t)
	srv := startServer(t, func(c *config.Config) { withKeys(c); c.Recordings.Dir = t.TempDir() })
	const roomName = "Team room é"
	join(t, srv, roomName, "alice", withToken(token(t, "alice", auth.Grants{Room: roomName}, time.Hour)))
	path := "/v1/rooms/" + url.PathEscape(roomName) + "/recordings"
	for _, c := range []struct {
		tok  string
		code int
	}{
		{"", http.StatusUnauthorized},
		{token(t, "bob", auth.Grants{Room: roomName}, time.Hour), http.StatusForbidden},
	} {
		var e protocol.Error // adminCall checks the {code, message} form
		if code := adminCall(t, srv, http.MethodPost, path, c.tok, map[string]any{}, &e); code != c.code || int(e.Code) != c.code {
			t.Errorf("POST %s refused by the admin check: %d %+v, want %d with {code, message}", path, code, e, c.code)
		}
	}
	rec := token(t, "rec", auth.Grants{Room: roomName, Record: true}, time.Hour)
	var missing map[string]any
	res := httpDo(t, http.MethodGet, "http://"+srv.Addr()+path+"/nope", "", rec, "")
	if err := json.Unmarshal([]byte(res.body), &missing); err != nil || res.status != http.StatusNotFound || missing["error"] == nil {
		t.Errorf("GET of an unknown recording: %d %s, want 404 with {error}", res.status, res.body)
	}
	var started struct{ ID, Dir string }
	if code := adminCall(t, srv, http.MethodPost, path, rec, map[string]any{}, &started); code != http.StatusCreated {
		t.Fatalf("start: %d %+v", code, started)
	}
	if !strings.HasPrefix(started.ID, "Team_room__-") || filepath.Base(started.Dir) != started.ID {
		t.Errorf("recording id %q in %q: want the room reduced to Team_room__ as docs/recording.md says", started.ID, started.Dir)
	}
	if code := adminCall(t, srv, http.MethodDelete, path+"/"+started.ID, rec, nil, nil); code != http.StatusOK {
		t.Errorf("stop: %d", code)
	}
}

// TestOutsiderSignalingUpgradeErrors: `GET /v1/rtc` is the signaling
// WebSocket (docs/PROTOCOL.md "Transport"); docs/security.md: a page of a
// site not allowed gets 403. A request the upgrade refused got only the
// status text ("Bad Request", "Forbidden"): the body now says what was
// wrong, as the API's errors do.
func TestOutsiderSignalingUpgradeErrors(t *testing.T) {
	parallel(t)
	srv := startServer(t, nil)
	url := "http://" + srv.Addr() + "/v1/rtc"
	plain := httpDo(t, http.MethodGet, url, "", "", "")
	if plain.status != http.StatusBadRequest || !strings.Contains(plain.body, "WebSocket") {
		t.Errorf("a plain GET of /v1/rtc: %d %q, want 400 saying it is a WebSocket endpoint", plain.status, plain.body)
	}
	foreign := httpDo(t, http.MethodGet, url, "", "", "", "Connection", "Upgrade", "Upgrade", "websocket",
		"Sec-WebSocket-Version", "13", "Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==", "Origin", "https://elsewhere.example")
	if foreign.status != http.StatusForbidden || !strings.Contains(foreign.body, "elsewhere.example") || !strings.Contains(foreign.body, "allowed_origins") {
		t.Errorf("an upgrade from another site's page: %d %q, want 403 naming the origin and http.allowed_origins", foreign.status, foreign.body)
	}
}

// TestOutsiderUnknownPathIs404: a request to a path nothing serves is
// 404 whatever its method. The web page's handler, which gets every path
// the API does not serve, answered a POST to a mistyped API path
// (/v1/rooms/x/whipx) 405 "method not allowed", as if the path existed
// for other methods. A page's path still answers POST with 405 and Allow.
func TestOutsiderUnknownPathIs404(t *testing.T) {
	parallel(t)
	srv := startServer(t, nil)
	base := "http://" + srv.Addr()
	for _, c := range []struct{ method, path string }{
		{http.MethodPost, "/v1/rooms/standup/whipx"},
		{http.MethodDelete, "/v1/roomz"},
		{http.MethodPut, "/nothing-here"},
		{http.MethodGet, "/v1/nothing"},
	} {
		if r := httpDo(t, c.method, base+c.path, "", "", ""); r.status != http.StatusNotFound {
			t.Errorf("%s %s: %d %q, want 404", c.method, c.path, r.status, r.body)
		}
	}
	if r := httpDo(t, http.MethodPost, base+"/", "", "", ""); r.status != http.StatusMethodNotAllowed || r.header.Get("Allow") != "GET, HEAD" {
		t.Errorf("POST /: %d, Allow %q, want 405 with Allow: GET, HEAD", r.status, r.header.Get("Allow"))
	}
}

// TestOutsiderRecordingStartBody: docs/recording.md: a start's body is
// `{}` (or empty), `{"mix": true}` or `{"track_id": ...}`, anything else
// `400`. What followed the object was ignored (`{} {"track_id": "TR_x"}`
// started a recording of the whole room), and a body over 4 KiB was cut
// and refused as "unexpected EOF"; they are 400 and 413 in words.
func TestOutsiderRecordingStartBody(t *testing.T) {
	parallel(t)
	srv := startServer(t, func(c *config.Config) { c.Recordings.Dir = t.TempDir() })
	join(t, srv, "rec-body", "alice")
	url := "http://" + srv.Addr() + "/v1/rooms/rec-body/recordings"
	for _, c := range []struct {
		body    string
		status  int
		mention string
	}{
		{`{} {"track_id":"TR_x"}`, http.StatusBadRequest, "one JSON object"},
		{`{"track_id":"` + strings.Repeat("x", 5000) + `"}`, http.StatusRequestEntityTooLarge, "larger than"},
		// mix with track_id was dropped silently (a track recording
		// started); the field errors spoke Go ("Go struct field
		// StartRequest.mix of type bool").
		{`{"track_id":"TR_x","mix":true}`, http.StatusBadRequest, `"mix" is for a room recording`},
		{`{"mix":"yes"}`, http.StatusBadRequest, `field "mix" must be a boolean, not string`},
		{`{"track_id":5}`, http.StatusBadRequest, `field "track_id" must be a string, not number`},
		{`{"trackId":"TR_x"}`, http.StatusBadRequest, `unknown field "trackId"`},
	} {
		r := httpDo(t, http.MethodPost, url, "application/json", "", c.body)
		var e map[string]any
		if json.Unmarshal([]byte(r.body), &e) != nil || r.status != c.status || !strings.Contains(fmt.Sprint(e["error"]), c.mention) {
			t.Errorf("POST %.40s...: %d %s, want %d with an error saying %q", c.body, r.status, r.body, c.status, c.mention)
		}
		if strings.Contains(r.body, "Go struct") {
			t.Errorf("POST %.40s...: %s speaks Go, not the API", c.body, r.body)
		}
	}
	if r := httpDo(t, http.MethodGet, url, "", "", ""); !strings.Contains(r.body, `"recordings":[]`) {
		t.Errorf("after the refused starts: %s, want no recording", r.body)
	}
}
