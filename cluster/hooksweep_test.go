package cluster_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/starling-rtc/starling/cluster"
)

// On a room state bucket without per-key TTLs (made by an operator
// without LimitMarkerTTL, or an external NATS before 2.11) the webhook
// claim keys would stay for good, one per participant and track that
// ever left. The nodes sweep them: a claim older than the claim TTL is
// purged, leaving no deletion marker; a newer one stays. Before, nothing
// removed them.
func TestClaimKeysSweptWithoutKeyTTL(t *testing.T) {
	parallel(t)
	addr := startNATS(t)
	url := "nats://starling:" + testSecret + "@" + addr
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "starling-rooms", Storage: jetstream.MemoryStorage, History: 1}); err != nil {
		t.Fatal(err)
	}
	n, err := cluster.Start(cluster.Options{BusOptions: cluster.BusOptions{NodeID: "sweeper", Secret: testSecret, NATSURL: url, Logger: testLogger()}})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()

	claim := func(id string) {
		sent := make(chan struct{})
		n.Once(cluster.OnceParticipantLeft, id, func() { close(sent) })
		select {
		case <-sent:
		case <-time.After(30 * time.Second):
			t.Fatalf("the claim of %s was not made", id)
		}
	}
	stored := func(id string) string {
		got, err := n.ClaimStored(cluster.OnceParticipantLeft, id)
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	claim("old")
	t0 := time.Now()
	n.SweepClaimsAt(t0) // notes the stream's last sequence: "old" is before it
	claim("new")
	n.SweepClaimsAt(t0.Add(cluster.ClaimTTL / 2))
	if got := stored("old"); got != "claim" {
		t.Fatalf("half a TTL later the old claim is %q, want kept", got)
	}
	n.SweepClaimsAt(t0.Add(cluster.ClaimTTL))
	if got := stored("old"); got != "" {
		t.Errorf("a TTL later the old claim is %q, want gone without a marker", got)
	}
	if got := stored("new"); got != "claim" {
		t.Errorf("the newer claim is %q, want kept", got)
	}
}
