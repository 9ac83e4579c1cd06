package server_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
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
