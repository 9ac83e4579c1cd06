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
