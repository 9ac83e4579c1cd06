package cluster_test

import (
	"errors"
	"testing"
	"time"

	"github.com/starling-rtc/starling/client"
	"github.com/starling-rtc/starling/config"
	"github.com/starling-rtc/starling/protocol"
)

// A join refused by its node after the cluster admitted it (the node's own
// max_rooms: the cluster's place is taken first, the node's rooms counted
// after) gives its place back. Before, its member key and slot stayed in
// the room state for as long as the node lived: a participant nobody had,
// listed by every node, holding one of the room's places (here the room of
// two then refused dave with one participant in it).
func TestJoinRefusedByNodeFreesItsPlace(t *testing.T) {
	parallel(t)
	srvs := startCluster(t, 2, func(c *config.Config) { c.Limits.MaxRooms, c.Limits.MaxParticipants = 1, 2 })
	a := join(t, srvs[0], "first", "a") // n0's one room
	b := join(t, srvs[1], "second", "b")
	_ = a
	api, _ := client.LoopbackAPI()
	c, err := client.Dial(ctxT(t, 15*time.Second), srvs[0].SignalingURL(), "second", client.Options{Name: "c", API: api})
	var perr *protocol.Error
	if !errors.As(err, &perr) || perr.Code != protocol.CodeTooLarge {
		if c != nil {
			c.Close()
		}
		t.Fatalf("c's join of a second room on n0 (max_rooms 1): %v, want error %d", err, protocol.CodeTooLarge)
	}
	eventually(t, 20*time.Second, "the room state holds b alone", func() bool {
		keys, err := srvs[1].Cluster().RoomKeys("second")
		return err == nil && len(keys["member"]) == 1 && len(keys["slot"]) == 1
	})
	dave := join(t, srvs[1], "second", "dave")
	seeEachOther(t, b, dave)
}
