package cluster

import (
	"context"
	"encoding/json"
	"sync/atomic"
	"time"

	"github.com/starling-rtc/starling/protocol"
	"github.com/starling-rtc/starling/room"
)

// Confirming a join's slot (slots.go).
//
// A join claims a slot, then writes its member key. A slot held by no
// member key is taken back (slotAbandoned) once it is older than
// staleSlot, or at once when its node was found gone: its node died
// between the two writes. A live join that took that long (a stalled
// process, a store electing a leader under load), or whose node another
// node found gone meanwhile (a stall, a cut, a partial partition of the
// routes), lost its slot without knowing, wrote its member key all the
// same, and the room held one more than its limit.
//
// So once its member key is written, a join confirms its slot: it writes
// the slot again at the revision it claimed. A take-back deletes a slot at
// the revision it read, when that slot had no member key: either the
// take-back lands first, and the confirmation finds the slot gone or
// someone else's (the join undoes itself and its client is told to try
// again), or the confirmation lands first, and the take-back's delete
// fails. A take-back that read the slots after the member key was written
// sees the member and leaves the slot. One write more per join, in rooms
// with a participant limit only. (It replaces a read of the slot for a
// join whose member write came more than a second after its claim: a
// read left a window between the take-back's read and its delete, and
// the take-back of a node found gone is not bound to that second.)

// errSlotLost: the join's slot was taken back before its member key was
// written. The client tries again (503) and claims afresh.
var errSlotLost = protocol.Errorf(protocol.CodeUnavailable, "cluster room state: this join was too slow and lost its place; try again")

// confirmSlot writes slot s of room key p again, as m's, at revision rev
// (0: read it first); errSlotLost if it is no longer m's.
func (n *Node) confirmSlot(p string, s int, rev uint64, m room.Member) error {
	val, _ := json.Marshal(holder{ID: m.ID, Node: m.Node})
	key := slotKey(p, s)
	return n.retry(func(ctx context.Context) error {
		if rev == 0 {
			var h holder
			r, err := n.getJSON(ctx, key, &h)
			if err != nil {
				return err
			}
			if r == 0 || h.ID != m.ID {
				return errSlotLost
			}
			rev = r
		}
		next, err := n.bus.kv.Update(ctx, key, val, rev)
		if isConflict(err) {
			// Taken back or taken, or this write landed on an earlier
			// try whose answer was lost: read it again.
			rev = 0
			return errRetry
		}
		if err == nil {
			rev = next
		}
		return err
	})
}

// slotHooks are test hooks (export_test.go): a shorter staleSlot.
type slotHooks struct {
	stale atomic.Int64 // ns; 0: staleSlot
}

// staleSlotAge is how old a slot held by no member must be to be taken back.
func (n *Node) staleSlotAge() time.Duration {
	if d := n.slotHooks.stale.Load(); d > 0 {
		return time.Duration(d)
	}
	return staleSlot
}
