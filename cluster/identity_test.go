package cluster_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/starling-rtc/starling/client"
	"github.com/starling-rtc/starling/protocol"
)

// Two joins of one identity at once on two nodes: the later one takes the
// identity key, but when it reads the earlier one's member key to delete
// it, that key may not be written yet; nobody then ends the earlier one.
// The race is made here as it ends: the identity key of first's identity
// names another member of the room (bee, on n1). first's node sees it in
// its watch and ends first with leave "duplicate": the identity's holder
// wins, as a second join replaces the first (before, both stayed).
func TestIdentityHolderWinsInState(t *testing.T) {
	parallel(t)
	srvs := startCluster(t, 3, withKeys)
	const rm = "holder"
	watcher := join(t, srvs[2], rm, "watcher", token(t, "watcher", rm))
	first := join(t, srvs[0], rm, "first", token(t, "carol", rm))
	bee := join(t, srvs[1], rm, "bee", token(t, "bee", rm))
	seeEachOther(t, watcher, first, bee)

	if replaced, err := srvs[1].Cluster().ClaimIdentity(rm, bee.ParticipantID(), "carol"); err != nil || replaced != first.ParticipantID() {
		t.Fatalf("claiming carol for bee replaced %q (%v), want first %q", replaced, err, first.ParticipantID())
	}
	ev, err := first.WaitEvent(ctxT(t, 15*time.Second), protocol.MethodLeave, nil)
	if err != nil {
		t.Fatalf("first (n0) got no leave: %v", err)
	}
	var leave protocol.LeaveParams
	_ = json.Unmarshal(ev.Params, &leave)
	if leave.Reason != protocol.ReasonDuplicate {
		t.Fatalf("leave reason %q, want %q", leave.Reason, protocol.ReasonDuplicate)
	}
	converged(t, srvs, rm, []*client.Client{watcher, bee}, []*client.Client{first})
}
