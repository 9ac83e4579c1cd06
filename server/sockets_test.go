package server_test

import (
	"context"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// TestShutdownClosesIdleSockets: a socket that connected but never joined
// has no participant to send `leave` to; shutdown still closes it (1001).
func TestShutdownClosesIdleSockets(t *testing.T) {
	parallel(t)
	srv := startServer(t, nil)
	ws, _, err := websocket.DefaultDialer.Dial(srv.SignalingURL(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	_ = ws.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, _, err = ws.ReadMessage()
	if !websocket.IsCloseError(err, websocket.CloseGoingAway) {
		t.Fatalf("idle socket after shutdown: got %v, want close 1001 (going away)", err)
	}
}
