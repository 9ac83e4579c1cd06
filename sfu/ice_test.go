package sfu

import (
	"io"
	"log/slog"
	"testing"

	"github.com/starling-rtc/starling/internal/testutil/icecheck"
)

// TestICESurvivesUnansweredFirstChecks: the server offers (as for every
// subscriber connection, where it is the controlling ICE agent, the only
// side that nominates a pair), and its first connectivity checks go
// unanswered for 2.5 s: on a busy machine the client's ICE agent starts
// late and discards them. The connection must still come up. With pion's
// default of 7 retries 200 ms apart the server gave its only pair up after
// 1.6 s, the client's own checks changed nothing, and the connection stayed
// "checking" until ICE failed.
func TestICESurvivesUnansweredFirstChecks(t *testing.T) {
	e, err := NewEngine(EngineConfig{BindIP: "127.0.0.1", TCPPort: -1, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	server, err := e.NewPeerConnection(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer server.Close()
	icecheck.UnansweredFirstChecks(t, server, "server")
}
