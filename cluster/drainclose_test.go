package cluster_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// TestDrainCloseSaysWhy: a draining node sends `reconnect {reason:
// "drain"}` and closes the socket (PROTOCOL.md "reconnect"). The close
// frame is what a raw client logs: its reason must say the node is
// draining, not that the client "resumed on another connection", which it
// has not done.
func TestDrainCloseSaysWhy(t *testing.T) {
	parallel(t)
	srvs := startCluster(t, 3, nil)
	ws, _, err := (&websocket.Dialer{HandshakeTimeout: 10 * time.Second}).Dial(srvs[0].SignalingURL(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	if err := ws.WriteMessage(websocket.TextMessage, []byte(`{"jsonrpc":"2.0","id":1,"method":"join","params":{"room":"drain-close"}}`)); err != nil {
		t.Fatal(err)
	}
	_ = ws.SetReadDeadline(time.Now().Add(20 * time.Second))
	if _, data, err := ws.ReadMessage(); err != nil || !strings.Contains(string(data), `"result"`) {
		t.Fatalf("join: %v %s", err, data)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	go srvs[0].Drain(ctx)
	reconnect := false
	for {
		_, data, err := ws.ReadMessage()
		if err != nil {
			var ce *websocket.CloseError
			if !asClose(err, &ce) || ce.Code != websocket.CloseNormalClosure {
				t.Fatalf("the socket ended with %v, want a close frame 1000", err)
			}
			if !reconnect {
				t.Errorf("closed before reconnect")
			}
			if !strings.Contains(ce.Text, "drain") {
				t.Errorf("close reason %q does not say the node is draining", ce.Text)
			}
			return
		}
		reconnect = reconnect || strings.Contains(string(data), `"method":"reconnect"`)
	}
}

func asClose(err error, ce **websocket.CloseError) bool {
	c, ok := err.(*websocket.CloseError)
	*ce = c
	return ok
}
