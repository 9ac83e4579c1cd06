package server_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"slices"
	"testing"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// startTestNATS starts an in-process NATS server with JetStream on a free
// loopback port, for nodes started with --nats-url, and a client of it for
// the test to read the room state bucket as an outsider.
func startTestNATS(t *testing.T) (url string, nc *nats.Conn) {
	t.Helper()
	ns, err := natsserver.NewServer(&natsserver.Options{
		Host: "127.0.0.1", Port: -1, NoSigs: true, NoLog: true,
		JetStream: true, StoreDir: t.TempDir(),
	})
	if err != nil {
		t.Fatal(err)
	}
	ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("the test NATS server did not start")
	}
	// Stopped after the nodes (cleanups run last first).
	t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	nc, err = nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return ns.ClientURL(), nc
}

// waitStoredWithdrawn waits (a watch of the room's member keys in the room
// state bucket, docs/cluster.md) until a member of roomName is stored with
// cid among its withdrawn tracks.
func waitStoredWithdrawn(t *testing.T, nc *nats.Conn, roomName, cid string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	kv, err := js.KeyValue(ctx, "starling-rooms")
	if err != nil {
		t.Fatal(err)
	}
	w, err := kv.Watch(ctx, "r"+base64.RawURLEncoding.EncodeToString([]byte(roomName))+".m.>")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = w.Stop() }()
	for {
		select {
		case <-ctx.Done():
			t.Fatalf("no member of room %s stored with %q withdrawn", roomName, cid)
		case e := <-w.Updates():
			if e == nil || e.Operation() != jetstream.KeyValuePut {
				continue
			}
			var m struct {
				Withdrawn []string `json:"withdrawn"`
			}
			if json.Unmarshal(e.Value(), &m) == nil && slices.Contains(m.Withdrawn, cid) {
				return
			}
		}
	}
}
