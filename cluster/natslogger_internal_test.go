package cluster

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
)

// The embedded NATS server's warning about a plaintext password (the
// cluster secret, handed to it in memory) is not a warning of Starling's:
// every clustered node logged "Plaintext passwords detected, use nkeys or
// bcrypt" at start, advice an operator cannot follow. Other warnings pass.
func TestNATSLoggerQuietsPlaintextPasswordWarning(t *testing.T) {
	var buf bytes.Buffer
	l := &natsLogger{log: slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelWarn}))}
	l.Warnf("Plaintext passwords detected, use nkeys or bcrypt")
	l.Warnf("JetStream %s", "is low on memory")
	out := buf.String()
	if strings.Contains(out, "Plaintext passwords") {
		t.Errorf("the plaintext-password advice is logged as a warning:\n%s", out)
	}
	if !strings.Contains(out, "JetStream is low on memory") {
		t.Errorf("another warning of the server is not logged:\n%s", out)
	}
}

// Two nodes with one id: NATS refuses the route between them ("Remote
// server has a duplicate name"), which the node's start reports at once as
// ErrDuplicateNodeID. Before, seen from outside with two nodes started as
// --node-id dup, both warned of a wrong cluster secret and stopped after
// 30 s with "no leader: start the other nodes listed in --cluster-routes".
func TestNATSLoggerReportsDuplicateNodeID(t *testing.T) {
	var buf bytes.Buffer
	l := &natsLogger{log: slog.New(slog.NewTextHandler(&buf, nil)), authErr: make(chan error, 1)}
	l.Errorf("%s - rid:%d - Remote server has a duplicate name: %q", "127.0.0.1:7962", 5, "dup")
	select {
	case err := <-l.authErr:
		if err != ErrDuplicateNodeID {
			t.Fatalf("start stopped with %v, want ErrDuplicateNodeID", err)
		}
	default:
		t.Fatalf("a duplicate node id is not reported to the start; log:\n%s", buf.String())
	}
}
