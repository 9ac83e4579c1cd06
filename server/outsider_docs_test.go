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

// The documents as an outsider runs them: their commands, examples and
// tables checked against the server (raw frames and JSON maps, as in
// outsider_test.go).

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
