package server_test

import (
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/starling-rtc/starling/auth"
)

// TestOutsiderReplacedWhileJoiningResultFirst: docs/PROTOCOL.md "Order
// after join": the join result is always sent before any notification to
// the joiner. Several sockets joining with one identity at once (a client
// retrying on a slow network, two tabs) replace each other (docs/auth.md);
// one replaced while its own join was being answered got `leave`
// ("duplicate") before its join result, then the result, then a subscriber
// offer for a participant already gone. Each socket must read its join
// result first; one that is replaced then reads `leave` and the close,
// and nothing else after the leave.
func TestOutsiderReplacedWhileJoiningResultFirst(t *testing.T) {
	parallel(t)
	srv := startServer(t, withKeys)
	const rounds, sockets = 50, 4
	replaced := 0
	for r := 0; r < rounds; r++ {
		room := fmt.Sprintf("twice-%d", r)
		tok := token(t, "same-person", auth.Grants{Room: room}, time.Hour)
		frame, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": 1, "method": "join",
			"params": map[string]any{"room": room, "token": tok}})
		conns := make([]*outsiderWS, sockets)
		for i := range conns {
			conns[i] = outsiderDial(t, srv.SignalingURL())
		}
		var wg sync.WaitGroup
		for _, o := range conns {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_ = o.ws.WriteMessage(websocket.TextMessage, frame)
			}()
		}
		wg.Wait()
		// Every socket but the last admitted is replaced: it reads leave
		// and the close. What it reads before its join result must be
		// nothing.
		for i, o := range conns {
			first := o.next(t)
			if first["id"] != float64(1) {
				t.Errorf("round %d, socket %d: the first frame is %v, want the join result", r, i, first)
				continue
			}
			if first["error"] != nil {
				t.Errorf("round %d, socket %d: join: %v", r, i, first["error"])
			}
		}
		// Each socket has its leave (or not) after the result; count them
		// so the test says whether it saw the race at all.
		for i, o := range conns {
			_ = o.ws.WriteMessage(websocket.TextMessage, []byte(`{"jsonrpc":"2.0","id":2,"method":"ping"}`))
			left := false
			for {
				m, ok := <-o.in
				if !ok {
					break
				}
				if left && m["method"] != nil {
					t.Errorf("round %d, socket %d: %v after leave (the participant is gone)", r, i, m["method"])
				}
				if m["method"] == "leave" {
					replaced++
					left = true
				}
				if m["id"] == float64(2) {
					break
				}
			}
			_ = o.ws.Close()
		}
	}
	t.Logf("%d of %d sockets replaced by another join of the same identity", replaced, rounds*sockets)
}
