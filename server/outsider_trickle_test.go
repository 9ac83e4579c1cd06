package server_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// TestOutsiderGarbageCandidateBeforeDescription: docs/PROTOCOL.md "Errors
// for notifications": a client notification that fails is answered with an
// error whose id is null. A candidate line that does not parse failed only
// once the connection had its remote description: trickled before it (a
// client that trickles its publisher candidates ahead of its offer, or its
// subscriber ones ahead of its answer) it was kept silently and dropped
// later, so the client never learnt its candidates were garbage. A good
// candidate at that point is still accepted without an answer.
func TestOutsiderGarbageCandidateBeforeDescription(t *testing.T) {
	parallel(t)
	srv := startServer(t, nil)
	o := outsiderDial(t, srv.SignalingURL())
	if _, e := o.call(1, "join", map[string]any{"room": "early-garbage"}); e != nil {
		t.Fatalf("join: %v", e)
	}
	send := func(frame string) {
		t.Helper()
		if err := o.ws.WriteMessage(websocket.TextMessage, []byte(frame)); err != nil {
			t.Fatal(err)
		}
	}
	// next returns the next frame that is not a server notification.
	next := func() map[string]any {
		t.Helper()
		deadline := time.After(20 * time.Second)
		for {
			select {
			case m, ok := <-o.in:
				if !ok {
					t.Fatal("the socket closed")
				}
				if _, note := m["method"]; note {
					continue
				}
				return m
			case <-deadline:
				t.Fatal("no answer")
			}
		}
	}
	for i, target := range []string{"publisher", "subscriber"} {
		// Neither connection has a remote description: no publisher offer
		// was sent, the first subscriber offer is not answered.
		send(`{"jsonrpc":"2.0","method":"candidate","params":{"target":"` + target + `","candidate":{"candidate":"candidate:garbage","sdpMid":"0"}}}`)
		send(`{"jsonrpc":"2.0","method":"candidate","params":{"target":"` + target + `","candidate":{"candidate":"candidate:1 1 udp 2130706431 192.0.2.10 50000 typ host","sdpMid":"0"}}}`)
		id := float64(10 + i)
		send(fmt.Sprintf(`{"jsonrpc":"2.0","id":%v,"method":"ping"}`, id))
		m := next()
		e, _ := m["error"].(map[string]any)
		if idv, has := m["id"]; !has || idv != nil || e == nil || e["code"] != float64(-32602) {
			t.Fatalf("a %s candidate that does not parse, before the description: %v, want a -32602 error with id null", target, m)
		}
		if msg, _ := e["message"].(string); !strings.Contains(msg, "candidate") {
			t.Errorf("the error's message %q does not say the candidate was wrong", msg)
		}
		// The good candidate gets no answer: the next frame is the ping's.
		if m := next(); m["id"] != id || m["result"] == nil {
			t.Fatalf("after a good %s candidate, the next frame is %v, want the ping's result (id %v)", target, m, id)
		}
	}
}
