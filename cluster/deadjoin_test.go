package cluster_test

import (
	"errors"
	"testing"
	"time"

	"github.com/starling-rtc/starling/client"
	"github.com/starling-rtc/starling/config"
	"github.com/starling-rtc/starling/protocol"
)

// TestDeadJoinSlotFreed: in a room limited to two, alice is in and
// carol's join on another node claims the second slot; that node (the
// room state stream's leader) dies right then, before carol's member is
// written. The slot names that node and no member: once the others find
// the node gone, they free it, without waiting for a join to find
// the room full (it stayed held for good before: nothing but such a join
// took it back, and only 10 s after the claim, refusing joins until
// then). Then bob gets the place, and dave is refused: the limit still
// holds.
func TestDeadJoinSlotFreed(t *testing.T) {
	parallel(t)
	srvs := startCluster(t, 3, func(c *config.Config) { c.Limits.MaxParticipants = 2 })
	const room = "dead-join"
	// The node that dies leads the room state's stream (the harder case:
	// the others read and free the slot once a new leader is elected).
	d := -1
	for i, s := range srvs {
		if s.Cluster().StoreLeader() == s.Cluster().ID() {
			d = i
		}
	}
	if d < 0 {
		t.Fatal("no node leads the room state store")
	}
	a, b := srvs[(d+1)%3], srvs[(d+2)%3]
	// Every node has heard the others: a node that died before a node
	// that had just started heard it is found gone by its key, later.
	eventually(t, 20*time.Second, "every node hears the two others", func() bool {
		for _, s := range srvs {
			if len(s.Cluster().OtherNodes()) != 2 {
				return false
			}
		}
		return true
	})
	alice := join(t, a, room, "alice")
	dead := make(chan struct{})
	srvs[d].Cluster().OnSlotClaimed(func() {
		srvs[d].Cluster().Abort() // the member's write fails: the node's bus is gone
		go func() { srvs[d].Abort(); close(dead) }()
	})
	api, err := client.LoopbackAPI()
	if err != nil {
		t.Fatal(err)
	}
	if c, err := client.Dial(ctxT(t, 15*time.Second), srvs[d].SignalingURL(), room, client.Options{Name: "carol", API: api}); err == nil {
		c.Close()
		t.Fatal("carol's join succeeded; its node was to die within it")
	}
	<-dead
	eventually(t, 10*time.Second, "the others see alice's slot and identity, and carol's", func() bool {
		return len(a.Cluster().SlotsHeld(room)) == 2 && a.Cluster().IdentitiesHeld(room) == 2
	})
	eventually(t, 30*time.Second, "the slot of the dead node's join is freed", func() bool {
		return len(a.Cluster().SlotsHeld(room)) == 1
	})
	// Its identity too (a join without one claims its member id as one):
	// it blocked nobody, but its key stayed for good.
	eventually(t, 30*time.Second, "the identity of the dead node's join is freed", func() bool {
		return a.Cluster().IdentitiesHeld(room) == 1
	})
	bob := join(t, b, room, "bob")
	seeEachOther(t, alice, bob)
	_, err = client.Dial(ctxT(t, 15*time.Second), a.SignalingURL(), room, client.Options{Name: "dave", API: api})
	var perr *protocol.Error
	if !errors.As(err, &perr) || perr.Code != protocol.CodeTooLarge {
		t.Fatalf("a third join: %v, want error %d (room full)", err, protocol.CodeTooLarge)
	}
}
