package cluster

import (
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// An embedded NATS server whose port is taken (another process bound it
// between the pick and the start) is given up as soon as it says so, not
// after the whole start wait: with an hour's wait, a readyOrFatal that
// ignored the fatal error would hold the test until go test's timeout.
func TestBusStartPortTakenGivesUpAtOnce(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	port := l.Addr().(*net.TCPAddr).Port
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: port, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	nl := &natsLogger{log: slog.New(slog.NewTextHandler(io.Discard, nil)), authErr: make(chan error, 1), fatal: make(chan struct{})}
	ns.SetLoggerV2(nl, false, false, false)
	ns.Start()
	defer ns.Shutdown()
	if readyOrFatal(ns, nl.fatal, time.Hour) {
		t.Fatalf("a NATS server on taken port %d said it was ready", port)
	}
}
