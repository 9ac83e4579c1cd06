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
//
// The participant id joins the room here once Join has returned: on a
// starved machine (-race, load 27) that took longer than confirmAfter,
// the one comparison found no local participant to compare, and both
// stayed (TestOutsiderSimultaneousIdentityAcrossNodes, once). The check
// comes back each confirmAfter until the participant is local, for
// identityCheckTries at most (a join refused after Join never arrives).
func (n *Node) checkIdentityLater(name, id string) {
	n.spawn(func() {
		for try := 0; try < identityCheckTries; try++ {
			select {
			case <-time.After(confirmAfter + 100*time.Millisecond):
			case <-n.stop:
				return
			}
			if n.rooms == nil {
				return
			}
			r := n.rooms.Room(name)
			local := r != nil && r.Participant(id) != nil
			if local {
				n.reconcile(r, false)
			}
			if f := n.identityChecked.Load(); f != nil {
				(*f)(local) // tests (export_test.go)
			}
			if local {
				return
			}
		}
	})
}

// identityCheckTries bounds how long checkIdentityLater waits for the
// joined participant to be local: about 30 s.
const identityCheckTries = 27
