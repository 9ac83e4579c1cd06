package cluster_test

import (
	"context"
	"testing"
	"time"

	"github.com/starling-rtc/starling/client"
)

// TestClientFailsOverToAnotherNode: a publisher that knows two nodes of
// the cluster loses its node (shut down); the Go client carries on
// through the other one, with new connections and its tracks published
// again, and a viewer on a third node gets its media again through the
// relay. Where the cluster resumes the session on another node the
// participant stays the same (join result newConnections); otherwise the
// client joins afresh (Options.Rejoin) as a new participant.
func TestClientFailsOverToAnotherNode(t *testing.T) {
	srvs := startCluster(t, 3, nil)
	const room = "client-failover"
	viewer := join(t, srvs[2], room, "viewer")
	rv := countMedia(viewer)
	api, err := client.LoopbackAPI()
	if err != nil {
		t.Fatal(err)
	}
	pub, err := client.Dial(ctxT(t, 15*time.Second), srvs[0].SignalingURL()+","+srvs[1].SignalingURL(), room,
		client.Options{Name: "pub", API: api, Rejoin: true})
	if err != nil {
		t.Fatalf("pub joins: %v", err)
	}
	t.Cleanup(pub.Close)
	seeEachOther(t, viewer, pub)
	publishMedia(t, pub, true)
	firstID := pub.ParticipantID()
	eventually(t, 30*time.Second, "the viewer on n2 gets the publisher's media from n0", func() bool {
		return rv.count(firstID, "audio") >= 50 && rv.count(firstID, "video") >= 30
	})

	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := srvs[0].Shutdown(ctx); err != nil {
		t.Fatalf("shutting n0 down: %v", err)
	}
	var how string
	t.Cleanup(func() {
		if how == "" {
			for _, e := range pub.Events() {
				t.Logf("pub event %s %s", e.Method, e.Params)
			}
		}
	})
	eventually(t, 30*time.Second, "the publisher resumes or rejoins through n1", func() bool {
		for _, e := range pub.Events() {
			if e.Method == client.EventResumed || e.Method == client.EventRejoined {
				how = e.Method
				return true
			}
		}
		return false
	})
	if pub.URL() != srvs[1].SignalingURL() {
		t.Fatalf("the publisher is on %s, want n1 (%s)", pub.URL(), srvs[1].SignalingURL())
	}
	id := pub.ParticipantID()
	switch how {
	case client.EventResumed:
		if id != firstID || !pub.LastJoin().NewConnections {
			t.Fatalf("resumed as %s (was %s), newConnections %v: want the same participant on new connections",
				id, firstID, pub.LastJoin().NewConnections)
		}
	case client.EventRejoined:
		if id == firstID {
			t.Fatalf("rejoined as the same participant %s", id)
		}
	}
	t.Logf("the publisher %s through n1 (participant %s)", how, id)
	before := rv.count(id, "audio")
	eventually(t, 30*time.Second, "the viewer on n2 gets the publisher's media again, now from n1", func() bool {
		return rv.count(id, "audio") >= before+50 && rv.count(id, "video") >= 30
	})
}
