package cluster_test

import (
	"errors"
	"testing"
	"time"

	"github.com/starling-rtc/starling/client"
	"github.com/starling-rtc/starling/config"
	"github.com/starling-rtc/starling/protocol"
)

// TestDeadJoinSlotFreed: in a room limited to two, alice is in (n1) and
// carol's join on n0 claims the second slot; n0 dies right then, before
// carol's member is written. The slot names n0 and no member: once the
// others find n0 gone, they free it, without waiting for a join to find
// the room full (it stayed held for good before: nothing but such a join
// took it back, and only 10 s after the claim, refusing joins until
// then). Then bob gets the place (n2), and dave is refused: the limit
// still holds.
func TestDeadJoinSlotFreed(t *testing.T) {
	parallel(t)
	srvs := startCluster(t, 3, func(c *config.Config) { c.Limits.MaxParticipants = 2 })
	const room = "dead-join"
	alice := join(t, srvs[1], room, "alice")
	dead := make(chan struct{})
	srvs[0].Cluster().OnSlotClaimed(func() {
		srvs[0].Cluster().Abort() // the member's write fails: n0's bus is gone
		go func() { srvs[0].Abort(); close(dead) }()
	})
	api, err := client.LoopbackAPI()
	if err != nil {
		t.Fatal(err)
	}
	if c, err := client.Dial(ctxT(t, 15*time.Second), srvs[0].SignalingURL(), room, client.Options{Name: "carol", API: api}); err == nil {
		c.Close()
		t.Fatal("carol's join on n0 succeeded; n0 was to die within it")
	}
	<-dead
	eventually(t, 10*time.Second, "n1 and n2 hold alice's slot and carol's", func() bool {
		return len(srvs[1].Cluster().SlotsHeld(room)) == 2
	})
	eventually(t, 30*time.Second, "the slot n0's dead join held is freed", func() bool {
		return len(srvs[1].Cluster().SlotsHeld(room)) == 1
	})
	bob := join(t, srvs[2], room, "bob")
	seeEachOther(t, alice, bob)
	_, err = client.Dial(ctxT(t, 15*time.Second), srvs[1].SignalingURL(), room, client.Options{Name: "dave", API: api})
	var perr *protocol.Error
	if !errors.As(err, &perr) || perr.Code != protocol.CodeTooLarge {
		t.Fatalf("a third join: %v, want error %d (room full)", err, protocol.CodeTooLarge)
	}
}
