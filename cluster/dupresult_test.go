package cluster_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/starling-rtc/starling/internal/testutil"
	"github.com/starling-rtc/starling/protocol"
)

// A join that replaces a session of its identity on another node is told
// nothing of the session it replaced, as on one node (PROTOCOL.md "Order
// after join"): its result does not list it and it gets no participantLeft
// for it; the others are told it left ("duplicate"). Before, checked from
// outside with three processes, the join result on n1 listed the first
// session (still a stub there) and then told the joiner it left.
func TestDuplicateJoinResultOmitsReplaced(t *testing.T) {
	parallel(t)
	srvs := startCluster(t, 3, withKeys)
	watcher := join(t, srvs[1], "dupres", "watcher", token(t, "watcher", "dupres"))
	first := join(t, srvs[0], "dupres", "first", token(t, "carol", "dupres"))
	seeEachOther(t, watcher, first)
	second := join(t, srvs[1], "dupres", "second", token(t, "carol", "dupres"))
	firstID := first.ParticipantID()
	for _, p := range second.LastJoin().Participants {
		if p.ID == firstID {
			t.Errorf("the second session's join result lists the session it replaced")
		}
	}
	if reason := testutil.LeaveReason(t, first, "first session (n0)"); reason != protocol.ReasonDuplicate {
		t.Fatalf("leave reason %q, want %q", reason, protocol.ReasonDuplicate)
	}
	eventually(t, 10*time.Second, "the watcher sees the first session leave", func() bool { return !knows(watcher, firstID) })
	// n0's leave event for the first session reaches n1 after the result:
	// wait for the watcher (on n1) to have been told, then look.
	for _, e := range second.Events() {
		var p protocol.ParticipantLeftParams
		if e.Method == protocol.NotifyParticipantLeft && json.Unmarshal(e.Params, &p) == nil && p.ParticipantID == firstID {
			t.Errorf("the second session was told the session it replaced left (%s)", e.Params)
		}
	}
}
