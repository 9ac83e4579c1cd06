package cluster_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/starling-rtc/starling/protocol"
)

// A join through a node whose part of a room the admin just deleted (from
// another node) has not closed yet: the join opens a new room in the
// state (a new sid), and must get a part of that room, not the old one.
// Added to the old part, carol was in a room nobody else saw, with the
// deleted room's sid, until the command to close it (held here, as a
// slow bus would) arrived and ended her with roomClosed. Now the node
// closes the old part itself (bob, of the deleted room, leaves with
// roomClosed) and carol is in the new room, which works: dave joins it
// through another node and they see each other.
func TestJoinIntoDeletedRoomsPart(t *testing.T) {
	parallel(t)
	srvs := startCluster(t, 3, nil)
	const room = "delete-join"
	alice := join(t, srvs[0], room, "alice")
	bob := join(t, srvs[1], room, "bob")
	seeEachOther(t, alice, bob)
	old := bob.LastJoin().Room.SID
	release := srvs[1].Cluster().HoldCloses()
	t.Cleanup(release)
	if code := httpJSON(t, "DELETE", srvs[0].BaseURL()+"/v1/rooms/"+room, nil, nil); code != http.StatusOK {
		t.Fatalf("DELETE through n0: %d", code)
	}
	if _, err := alice.WaitEvent(ctxT(t, 15*time.Second), protocol.MethodLeave, nil); err != nil {
		t.Fatalf("alice (n0) not ended by the delete: %v", err)
	}
	carol := join(t, srvs[1], room, "carol")
	if sid := carol.LastJoin().Room.SID; sid == old {
		t.Fatalf("carol joined the deleted room instance %s through n1, whose part of it was still open", sid)
	}
	release()
	if _, err := bob.WaitEvent(ctxT(t, 15*time.Second), protocol.MethodLeave, nil); err != nil {
		t.Fatalf("bob, in the deleted room on n1, not ended: %v", err)
	}
	dave := join(t, srvs[2], room, "dave")
	seeEachOther(t, carol, dave)
	if dave.LastJoin().Room.SID != carol.LastJoin().Room.SID {
		t.Fatalf("carol in %s, dave in %s: want one room", carol.LastJoin().Room.SID, dave.LastJoin().Room.SID)
	}
	if r := leaveReason(bob); r != protocol.ReasonRoomClosed {
		t.Fatalf("bob left with %q, want %q", r, protocol.ReasonRoomClosed)
	}
	if r := leaveReason(carol); r != "-" {
		t.Fatalf("carol was ended (%s)", r)
	}
}
