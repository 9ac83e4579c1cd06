package cluster

import "time"

// checkIdentityLater compares the room's state with the local room once
// more, a moment after a join with an identity. Two joins of one identity
// at once on two nodes are settled by that comparison (reconcile.go: the
// identity's holder wins, the other is ended with "duplicate"), but it ran
// only when the room's keys changed or the room opened here: when the last
// change came before the joining participant was in the local room (its
// state is written first, then it is admitted), no comparison ever saw it,
// and both participants of the identity stayed. The first pass after
// confirmAfter records the difference; its recheck ends the participant.
func (n *Node) checkIdentityLater(name string) {
	n.spawn(func() {
		select {
		case <-time.After(confirmAfter + 100*time.Millisecond):
		case <-n.stop:
			return
		}
		if n.rooms == nil {
			return
		}
		if r := n.rooms.Room(name); r != nil {
			n.reconcile(r, false)
		}
	})
}
