package server_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/starling-rtc/starling/protocol"
)

// TestShutdownSendsLeave: Shutdown tells every participant why with `leave`
// {reason: "serverShutdown"} before their sockets close, refuses new joins,
// and returns once everyone is gone.
func TestShutdownSendsLeave(t *testing.T) {
	parallel(t)
	srv := startServer(t, nil)
	a := join(t, srv, "closing", "a")
	b := join(t, srv, "closing", "b")
	if _, err := a.WaitEvent(ctxT(t, 10*time.Second), protocol.NotifyParticipantJoined, nil); err != nil {
		t.Fatal(err)
	}
	// Connected but not joined yet: it will try to join mid-shutdown.
	late := dialRaw(t, srv)
	if err := late.ping(); err != nil {
		t.Fatal(err)
	}

	shutdownErr := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		shutdownErr <- srv.Shutdown(ctx)
	}()

	for _, c := range []struct {
		name string
		done <-chan struct{}
		wait func(ctx context.Context) error
	}{
		{"a", a.Done(), func(ctx context.Context) error {
			_, err := a.WaitEvent(ctx, protocol.MethodLeave, hasParam("reason", protocol.ReasonServerShutdown))
			return err
		}},
		{"b", b.Done(), func(ctx context.Context) error {
			_, err := b.WaitEvent(ctx, protocol.MethodLeave, hasParam("reason", protocol.ReasonServerShutdown))
			return err
		}},
	} {
		if err := c.wait(ctxT(t, 10*time.Second)); err != nil {
			t.Fatalf("client %s got no leave {reason: %q}: %v", c.name, protocol.ReasonServerShutdown, err)
		}
		select {
		case <-c.done:
		case <-time.After(10 * time.Second):
			t.Fatalf("client %s's socket is still open after leave", c.name)
		}
	}

	// A join while the server drains is refused with 503 (try another node) and a reason, or
	// the socket is closed under it; it never succeeds.
	// The server may close the not-yet-joined socket before the join is
	// written (it closes idle sockets when it drains): gorilla then says
	// "close sent", which is that outcome.
	late.wmu.Lock()
	_ = late.ws.SetWriteDeadline(time.Now().Add(10 * time.Second))
	werr := late.ws.WriteMessage(websocket.TextMessage, []byte(`{"jsonrpc":"2.0","id":"late","method":"join","params":{"room":"closing"}}`))
	late.wmu.Unlock()
	if werr != nil {
		if !errors.Is(werr, websocket.ErrCloseSent) {
			t.Fatalf("writing the late join: %v", werr)
		}
	} else if resp, ok := late.tryResponse(10 * time.Second); ok {
		if resp.Error == nil || resp.Error.Code != protocol.CodeUnavailable || !strings.Contains(resp.Error.Message, "shutting down") {
			t.Fatalf("join during shutdown answered %s, want error 503 saying the server is shutting down", msgString(resp))
		}
	} else if late.readErr() == nil {
		t.Fatal("join during shutdown got no answer and the socket stayed open")
	}

	select {
	case err := <-shutdownErr:
		if err != nil {
			t.Fatalf("shutdown: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("shutdown did not return")
	}
	if srv.Rooms().Room("closing") != nil {
		t.Fatal("the room is still open after shutdown")
	}
	// Once Shutdown has returned, nothing listens any more.
	ws, _, err := websocket.DefaultDialer.DialContext(ctxT(t, 5*time.Second), srv.SignalingURL(), nil)
	if err == nil {
		_ = ws.Close()
		t.Fatal("a new socket was accepted after shutdown")
	}
}

// TestHealthz: GET /healthz answers 200 with a JSON body.
func TestHealthz(t *testing.T) {
	parallel(t)
	srv := startServer(t, nil)
	req, err := http.NewRequestWithContext(ctxT(t, 5*time.Second), http.MethodGet, "http://"+srv.Addr()+"/healthz", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d, want 200: %s", resp.StatusCode, body)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Fatalf("Content-Type %q, want application/json", ct)
	}
	var health struct {
		Status string `json:"status"`
	}
	if err := json.Unmarshal(body, &health); err != nil || health.Status != "ok" {
		t.Fatalf("body %q, want JSON with status ok (%v)", body, err)
	}
	http.DefaultClient.CloseIdleConnections()
}
