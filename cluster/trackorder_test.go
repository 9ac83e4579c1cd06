package cluster_test

import (
	"fmt"
	"net/http"
	"testing"
	"time"
)

// A participant's tracks are listed in one order, whichever node answers
// and however often it is asked (docs/admin-api.md: in a cluster the answer
// is the same from every node). Before, each answer listed them in Go's
// map order, so two nodes (or two reads of one) disagreed about half the
// time (checked from outside: three nodes listed alice's audio and video
// in two orders).
func TestParticipantTrackOrderStable(t *testing.T) {
	parallel(t)
	srvs := startCluster(t, 3, nil) // n2 has no part of the room
	alice := join(t, srvs[0], "order", "alice")
	bob := join(t, srvs[1], "order", "bob")
	rb := countMedia(bob)
	seeEachOther(t, alice, bob)
	publishMedia(t, alice, true)
	aID := alice.ParticipantID()
	eventually(t, 20*time.Second, "bob receives alice's audio and video", func() bool {
		return rb.count(aID, "audio") > 10 && rb.count(aID, "video") > 5
	})
	first := ""
	for i := 0; i < 10; i++ {
		for _, s := range srvs {
			var p struct {
				Tracks []struct{ ID string } `json:"tracks"`
			}
			if code := adminGet(t, s.BaseURL()+"/v1/rooms/order/participants/"+aID, &p); code != http.StatusOK {
				t.Fatalf("GET alice on %s: %d", s.Cluster().ID(), code)
			}
			got := fmt.Sprint(p.Tracks)
			if len(p.Tracks) != 2 {
				t.Fatalf("alice has tracks %s on %s, want her audio and video", got, s.Cluster().ID())
			}
			if first == "" {
				first = got
			} else if got != first {
				t.Fatalf("alice's tracks listed as %s, then as %s (by %s)", first, got, s.Cluster().ID())
			}
		}
	}
}
