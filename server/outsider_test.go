package server_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/gorilla/websocket"
	"github.com/starling-rtc/starling/auth"
	"github.com/starling-rtc/starling/config"
)

// Checks written as an outsider reads the documents: raw frames and raw
// JSON maps only (no protocol/ types, no client/ code), so a mistake in
// the shared types cannot hide on both sides.

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

// shellWords splits one shell command line as sh would for the documents'
// examples: single quotes, double quotes (with \" and \\, and $VAR
// expanded from vars), $VAR unquoted.
func shellWords(line string, vars map[string]string) []string {
	var out []string
	var cur strings.Builder
	in := false
	expand := func(s string, i int) (string, int) { // s[i] == '$'
		j := i + 1
		for j < len(s) && (s[j] == '_' || s[j] >= 'A' && s[j] <= 'Z' || s[j] >= 'a' && s[j] <= 'z' || s[j] >= '0' && s[j] <= '9') {
			j++
		}
		return vars[s[i+1:j]], j
	}
	for i := 0; i < len(line); {
		c := line[i]
		switch {
		case c == ' ' || c == '\t':
			if in {
				out = append(out, cur.String())
				cur.Reset()
				in = false
			}
			i++
		case c == '\'':
			end := strings.IndexByte(line[i+1:], '\'')
			cur.WriteString(line[i+1 : i+1+end])
			i += end + 2
			in = true
		case c == '"':
			i++
			for i < len(line) && line[i] != '"' {
				switch {
				case line[i] == '\\' && i+1 < len(line) && strings.IndexByte(`"\$`, line[i+1]) >= 0:
					cur.WriteByte(line[i+1])
					i += 2
				case line[i] == '$':
					v, j := expand(line, i)
					cur.WriteString(v)
					i = j
				default:
					cur.WriteByte(line[i])
					i++
				}
			}
			i++
			in = true
		case c == '$':
			v, j := expand(line, i)
			cur.WriteString(v)
			i = j
			in = true
		default:
			cur.WriteByte(c)
			i++
			in = true
		}
	}
	if in {
		out = append(out, cur.String())
	}
	return out
}

// docCommands returns the indented shell commands of a section of a
// document (lines joined at a trailing backslash, comments left out).
func docCommands(t *testing.T, doc, section, prefix string) []string {
	t.Helper()
	raw, err := os.ReadFile(doc)
	if err != nil {
		t.Fatal(err)
	}
	text := string(raw)
	if section != "" {
		i := strings.Index(text, section)
		if i < 0 {
			t.Fatalf("%s has no section %q", doc, section)
		}
		text = text[i+len(section):]
		if j := strings.Index(text, "\n#"); j >= 0 {
			text = text[:j]
		}
	}
	var cmds []string
	pending := ""
	for _, l := range strings.Split(text, "\n") {
		l = strings.TrimSpace(l)
		if pending == "" && !strings.HasPrefix(l, prefix) {
			continue
		}
		if strings.HasSuffix(l, `\`) {
			pending += strings.TrimSuffix(l, `\`) + " "
			continue
		}
		cmds = append(cmds, pending+l)
		pending = ""
	}
	return cmds
}

// curlRequest makes the HTTP request the curl command line args would
// send: -X, -H and -d as curl reads them (-d without a Content-Type
// header sends application/x-www-form-urlencoded, and makes a POST).
func curlRequest(t *testing.T, args []string) *http.Request {
	t.Helper()
	method, url, body := "", "", ""
	hasBody := false
	header := http.Header{}
	for i := 1; i < len(args); i++ {
		switch a := args[i]; a {
		case "-s", "-i", "-si":
		case "-X":
			i++
			method = args[i]
		case "-H":
			i++
			k, v, _ := strings.Cut(args[i], ":")
			header.Add(strings.TrimSpace(k), strings.TrimSpace(v))
		case "-d", "--data":
			i++
			body, hasBody = args[i], true
		default:
			if strings.HasPrefix(a, "-") {
				t.Fatalf("curl option %q is not understood by this test: %v", a, args)
			}
			url = a
		}
	}
	if method == "" {
		method = http.MethodGet
		if hasBody {
			method = http.MethodPost
		}
	}
	if hasBody && header.Get("Content-Type") == "" {
		header.Set("Content-Type", "application/x-www-form-urlencoded") // what curl sends
	}
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatalf("%v: %v", args, err)
	}
	req.Header = header
	return req
}

// TestOutsiderAdminExamples runs the curl examples of docs/admin-api.md
// as written, against an open server (loopback, so $TOKEN may be empty)
// with a room "standup" whose participant PA_3kq... publishes TR_9x...:
// every one must succeed.
func TestOutsiderAdminExamples(t *testing.T) {
	parallel(t)
	srv := startServer(t, nil)
	pub := join(t, srv, "standup", "Alice")
	media := publishFake(t, pub)
	join(t, srv, "standup", "Bob") // the room outlives Alice's removal
	video := media.track("video").ID
	waitFor(t, 15*time.Second, "the video track announced", func() bool {
		var p map[string]any
		return adminCall(t, srv, http.MethodGet, "/v1/rooms/standup/participants/"+pub.ParticipantID(), "", nil, &p) == 200 &&
			strings.Contains(fmt.Sprint(p["tracks"]), video)
	})
	// The variables the document sets (S, AUTH, ...), S pointing at this
	// server; TOKEN is empty (an open server, loopback).
	vars := map[string]string{"TOKEN": ""}
	for _, a := range docCommands(t, "../docs/admin-api.md", "The examples below use", "") {
		if name, value, ok := strings.Cut(a, "="); ok && !strings.ContainsAny(name, " $") && name != "" {
			vars[name] = strings.Join(shellWords(value, vars), " ")
		}
	}
	vars["S"] = "http://" + srv.Addr()
	if vars["AUTH"] == "" {
		t.Fatalf("docs/admin-api.md no longer sets AUTH for its examples: %v", vars)
	}
	cmds := docCommands(t, "../docs/admin-api.md", "## Examples", "curl ")
	if len(cmds) < 10 {
		t.Fatalf("found %d curl examples in docs/admin-api.md, want the dozen it shows", len(cmds))
	}
	for _, cmd := range cmds {
		cmd = strings.NewReplacer("PA_3kq...", pub.ParticipantID(), "TR_9x...", video, "http://127.0.0.1:7900", vars["S"]).Replace(cmd)
		req := curlRequest(t, shellWords(cmd, vars))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("%s: %v", cmd, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("the documented %s\nanswered %d %s", cmd, resp.StatusCode, body)
		}
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
func TestGStreamerWHIPAsDocumented(t *testing.T) {
	parallelUnlessRace(t)
	requireGStreamer(t)
	srv := gstServer(t)
	var doc []string
	for _, cmd := range docCommands(t, "../docs/whip.md", "", "/usr/bin/python3 ") {
		if strings.Contains(cmd, "gst_whip.py") {
			doc = shellWords(cmd, map[string]string{"TOKEN": ""})
		}
	}
	if len(doc) < 3 || !strings.HasSuffix(doc[1], gstScript) {
		t.Fatalf("docs/whip.md shows no gst_whip.py command: %q", doc)
	}
	var args []string
	optional := false // inside [...], as usage texts write what may be left out
	for _, a := range doc[2:] {
		if strings.HasPrefix(a, "[") || optional {
			optional = !strings.HasSuffix(a, "]")
			continue
		}
		args = append(args, strings.Replace(a, "http://localhost:7900", "http://"+srv.Addr(), 1))
	}
	viewer := join(t, srv, "webinar", "viewer")
	out, err := gst(append(args, "--seconds", "3", "--local-ip", "127.0.0.1")...)
	if err != nil {
		t.Fatalf("the documented command %q fails: %v", doc, err)
	}
	if _, err := viewer.WaitEvent(ctxT(t, 20*time.Second), "participantJoined", nil); err != nil {
		t.Fatalf("the WHIP publisher never joined: %v\n%s", err, out)
	}
}

// docJSON returns the ```json blocks of a document, each decoded.
func docJSON(t *testing.T, doc string) []map[string]any {
	t.Helper()
	raw, err := os.ReadFile(doc)
	if err != nil {
		t.Fatal(err)
	}
	var out []map[string]any
	parts := strings.Split(string(raw), "```json\n")
	for _, p := range parts[1:] {
		block, _, _ := strings.Cut(p, "```")
		var m map[string]any
		if err := json.Unmarshal([]byte(block), &m); err != nil {
			t.Errorf("%s: a JSON example does not parse (%v):\n%s", doc, err, block)
			continue
		}
		out = append(out, m)
	}
	return out
}

// jsonPaths lists the field paths of v ("a.b", arrays as "a[]").
func jsonPaths(prefix string, v any, into map[string]bool) {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			into[prefix+k] = true
			jsonPaths(prefix+k+".", e, into)
		}
	case []any:
		for _, e := range x {
			jsonPaths(strings.TrimSuffix(prefix, ".")+"[].", e, into)
		}
	}
}

// assertSameFields: every field the document's example shows is one the
// server sends, at the same place.
func assertSameFields(t *testing.T, what string, doc, real any) {
	t.Helper()
	d, r := map[string]bool{}, map[string]bool{}
	jsonPaths("", doc, d)
	jsonPaths("", real, r)
	for p := range d {
		if !r[p] {
			t.Errorf("%s: the document shows field %q, which the server does not send (it sends %v)", what, p, keys(r))
		}
	}
}

func keys(m map[string]bool) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// TestOutsiderDocJSONExamples: every JSON example of docs/ parses, and the
// objects the server sends look as the documents show them: the admin
// API's participant, a recording, the TURN iceServers entry; the token
// payload of docs/auth.md, signed as it is shown, joins.
func TestOutsiderDocJSONExamples(t *testing.T) {
	parallel(t)
	docs, _ := filepath.Glob("../docs/*.md")
	for _, d := range docs {
		docJSON(t, d)
	}
	srv := startServer(t, func(c *config.Config) {
		c.TURN.Enabled = true
		c.TURN.Port = 0
		c.Keys = map[string]string{testAPIKey: testAPISecret}
		c.Recordings.Dir = t.TempDir()
	})
	adminTok := token(t, "ops", auth.Grants{Admin: true}, time.Hour)

	// docs/auth.md's payload, signed as any JWT library would, with a
	// future exp and this server's key.
	payload := docJSON(t, "../docs/auth.md")[0]
	payload["exp"] = time.Now().Add(time.Hour).Unix()
	payload["iss"] = testAPIKey
	grants, _ := payload["grants"].(map[string]any)
	roomName, _ := grants["room"].(string)
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims(payload)).SignedString([]byte(testAPISecret))
	if err != nil {
		t.Fatal(err)
	}
	o := outsiderDial(t, srv.SignalingURL())
	res, e := o.call(1, "join", map[string]any{"room": roomName, "token": tok})
	if e != nil {
		t.Fatalf("docs/auth.md's token payload, signed, does not join %q: %v", roomName, e)
	}
	assertSameFields(t, "docs/turn.md's iceServers entry", docJSON(t, "../docs/turn.md")[0], turnEntry(res))

	// A participant who publishes and one who receives, with a receiver
	// report, as in docs/admin-api.md's example.
	pub := join(t, srv, roomName, "Alice", withToken(token(t, "alice", auth.Grants{Room: roomName}, time.Hour)))
	publishFake(t, pub)
	viewer := join(t, srv, roomName, "Bob", withToken(token(t, "bob", auth.Grants{Room: roomName}, time.Hour)))
	var view map[string]any
	waitFor(t, 20*time.Second, "a subscription with a receiver report in the admin API", func() bool {
		view = nil
		adminCall(t, srv, http.MethodGet, "/v1/rooms/"+roomName+"/participants/"+viewer.ParticipantID(), adminTok, nil, &view)
		return strings.Contains(fmt.Sprint(view["subscriptions"]), "reception")
	})
	var pview map[string]any
	adminCall(t, srv, http.MethodGet, "/v1/rooms/"+roomName+"/participants/"+pub.ParticipantID(), adminTok, nil, &pview)
	view["tracks"] = pview["tracks"] // the example's participant both publishes and receives
	assertSameFields(t, "docs/admin-api.md's participant", docJSON(t, "../docs/admin-api.md")[0], view)

	var rec map[string]any
	if code := adminCall(t, srv, http.MethodPost, "/v1/rooms/"+roomName+"/recordings", adminTok, map[string]any{}, &rec); code != http.StatusCreated {
		t.Fatalf("starting a recording: %d %v", code, rec)
	}
	assertSameFields(t, "docs/recording.md's recording", docJSON(t, "../docs/recording.md")[0], rec)
}

// docMethods lists the methods of the table under heading in
// docs/PROTOCOL.md (first column, each `name`; "a / b" rows give both).
func docMethods(t *testing.T, heading string) []string {
	t.Helper()
	raw, err := os.ReadFile("../docs/PROTOCOL.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(raw), heading)
	if !ok {
		t.Fatalf("docs/PROTOCOL.md has no %q", heading)
	}
	var out []string
	for _, l := range strings.Split(rest, "\n")[1:] {
		if strings.HasPrefix(l, "## ") {
			break
		}
		if !strings.HasPrefix(l, "| `") {
			continue
		}
		cell := strings.Split(l, "|")[1]
		for _, f := range strings.Split(cell, "`") {
			if f = strings.TrimSpace(f); f != "" && f != "/" {
				out = append(out, f)
			}
		}
	}
	return out
}

// TestOutsiderDocumentedMethodsAreKnown: every request and client
// notification in docs/PROTOCOL.md's tables is a method the server knows:
// before join, a request gets 409 "join first" (join and ping succeed), a
// notification 409 with id null; never -32601.
func TestOutsiderDocumentedMethodsAreKnown(t *testing.T) {
	parallel(t)
	srv := startServer(t, nil)
	reqs := docMethods(t, "## Client → server requests")
	notes := docMethods(t, "## Client → server notifications")
	if len(reqs) < 10 || len(notes) < 2 {
		t.Fatalf("docs/PROTOCOL.md's tables list requests %v and notifications %v: fewer than the contract's", reqs, notes)
	}
	for i, m := range reqs {
		o := outsiderDial(t, srv.SignalingURL()) // a fresh socket: a join would change what follows
		params := map[string]any{}
		if m == "join" {
			params["room"] = "methods"
		}
		res, e := o.call(i+1, m, params)
		switch {
		case m == "join" || m == "ping":
			if e != nil || res == nil {
				t.Errorf("%s before join: %v, want a result", m, e)
			}
		case e == nil || e["code"] != float64(409):
			t.Errorf("%s before join: result %v error %v, want 409 (join first)", m, res, e)
		}
	}
	o := outsiderDial(t, srv.SignalingURL())
	for _, m := range notes {
		frame, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "method": m, "params": map[string]any{}})
		if err := o.ws.WriteMessage(websocket.TextMessage, frame); err != nil {
			t.Fatal(err)
		}
		select {
		case r := <-o.in:
			e, _ := r["error"].(map[string]any)
			if id, has := r["id"]; !has || id != nil || e == nil || e["code"] != float64(409) {
				t.Errorf("notification %s before join: %v, want error 409 with id null", m, r)
			}
		case <-time.After(20 * time.Second):
			t.Fatalf("notification %s before join: no answer", m)
		}
	}
}

// TestOutsiderDocLinks: the README and docs/ point a reader only at files
// the repository has: every relative Markdown link, and every mention of
// the protocol document, resolves (shared/PROTOCOL.md is the team's
// notes, outside the repository; docs/PROTOCOL.md is what readers get).
func TestOutsiderDocLinks(t *testing.T) {
	parallel(t)
	files, _ := filepath.Glob("../docs/*.md")
	files = append(files, "../README.md")
	link := regexp.MustCompile(`\]\(([^)#\s]+)`)
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range link.FindAllStringSubmatch(string(raw), -1) {
			target := m[1]
			if strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
				continue
			}
			if _, err := os.Stat(filepath.Join(filepath.Dir(f), target)); err != nil {
				t.Errorf("%s links to %s, which does not exist", f, target)
			}
		}
		if strings.Contains(string(raw), "`shared/PROTOCOL.md`") {
			t.Errorf("%s sends the reader to shared/PROTOCOL.md, which is not in the repository (docs/PROTOCOL.md is)", f)
		}
	}
}

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
