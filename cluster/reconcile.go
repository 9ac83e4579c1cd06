package cluster

import (
	"time"

	"github.com/starling-rtc/starling/protocol"
	"github.com/starling-rtc/starling/room"
)

// Comparing a room's state, as its watch sees it (watch.go), with the
// local room, and repairing what differs.

// reconcileState compares a room's state with the local room: a remote
// member not known here makes this node ask its node for a snapshot (at
// once when now is set: the room just opened here); a known remote
// participant missing from the state is removed, and a local one missing
// is written back or ended (reassert, writeback.go), once the difference has lasted
// confirmAfter. A difference not yet confirmed schedules a read of the
// state that confirms or clears it.
func (n *Node) reconcileState(r *room.Room, w *roomWatch, st roomState, now bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	t := time.Now()
	due := func(old map[string]time.Time, next map[string]time.Time, id string) bool {
		since, seen := old[id]
		if !seen {
			since = t
		}
		if t.Sub(since) >= confirmAfter {
			return true
		}
		next[id] = since
		return false
	}
	inState := make(map[string]bool, len(st.Members))
	tokens := map[string]string{} // this node's members' resume token hashes, as the state has them
	for _, m := range st.Members {
		inState[m.ID] = true
		if m.Node == n.id {
			tokens[m.ID] = m.Token
		}
	}
	known := r.RemoteMembers()
	unknown, absent, ownMissing := map[string]time.Time{}, map[string]time.Time{}, map[string]time.Time{}
	ask := map[string]bool{}
	for _, m := range st.Members {
		if m.Node != n.id && known[m.ID] == "" && (now || due(w.unknown, unknown, m.ID)) {
			ask[m.Node] = true
		}
	}
	var gone []string
	for id := range known {
		switch {
		case inState[id]:
		case n.isMoving(r.Name(), id):
			// A takeover between its delete and its write (moving.go):
			// kept absent, so the recheck comes back.
			since, seen := w.absent[id]
			if !seen {
				since = t
			}
			absent[id] = since
			if t.Sub(since) >= confirmAfter {
				n.movesHeld.Add(1) // tests
			}
		case due(w.absent, absent, id):
			gone = append(gone, id)
		}
	}
	if len(gone) > 0 && n.bucketJustRemade() {
		// The bucket was made again (its NATS server restarted) and the
		// other nodes may not have written their members back yet: they
		// did not leave. Kept absent, so the recheck comes back.
		for _, id := range gone {
			absent[id] = t.Add(-confirmAfter)
		}
		gone = nil
	}
	var missing []room.Member
	var dups, retoken []string
	replaced, staleToken := map[string]time.Time{}, map[string]time.Time{}
	localTokens := map[string]string{}
	p := roomKey(r.Name())
	for _, m := range r.LocalMembers() {
		if !inState[m.ID] {
			if due(w.ownMissing, ownMissing, m.ID) {
				missing = append(missing, m)
			}
			continue
		}
		// Two joins of one identity at once: the later one took the
		// identity but read the earlier one's member key before it was
		// written, so nobody ends the earlier one. The identity's holder
		// wins, as a second join replaces the first.
		if h := st.holders[identityKey(p, m.Identity)]; m.Identity != "" && h != "" && h != m.ID && inState[h] && due(w.replaced, replaced, m.ID) {
			dups = append(dups, m.ID)
		}
		// A resume changes the token; its hash is recorded in the
		// background (SetToken), which gives up while the store is out of
		// reach. A token the state does not know cannot resume through
		// another node: record it again.
		if tok, ours := tokens[m.ID]; ours && m.Token != "" && tok != m.Token && due(w.staleToken, staleToken, m.ID) {
			retoken = append(retoken, m.ID)
			localTokens[m.ID] = m.Token
		}
	}
	if len(unknown)+len(absent)+len(ownMissing)+len(missing)+len(gone)+len(ask)+len(replaced)+len(dups) > 0 {
		n.log.Debug("room state differs from the room here", "room", r.Name(), "unknown", len(unknown)+len(ask), "absent", len(absent)+len(gone), "ownMissing", len(ownMissing)+len(missing), "replaced", len(replaced)+len(dups))
	}
	for _, id := range retoken {
		n.log.Info("room state: recording a participant's resume token again", "room", r.Name(), "member", id)
		n.SetToken(r.Name(), id, localTokens[id]) // takeover.go
	}
	for _, id := range dups {
		n.log.Info("room state: a participant here was replaced by a join of its identity elsewhere", "room", r.Name(), "member", id)
		r.ApplyControl(room.Event{Type: room.CtlKick, ParticipantID: id, Reason: protocol.ReasonDuplicate})
	}
	// Written back, or ended when the room no longer admits them
	// (writeback.go); one the store failed is due again at the next pass.
	for _, m := range n.reassert(r, missing) {
		ownMissing[m.ID] = t.Add(-confirmAfter)
	}
	w.unknown, w.absent, w.ownMissing, w.replaced, w.staleToken = unknown, absent, ownMissing, replaced, staleToken
	if len(unknown)+len(absent)+len(ownMissing)+len(replaced)+len(staleToken) > 0 && !w.recheck {
		w.recheck = true
		n.spawn(func() {
			select {
			case <-time.After(confirmAfter + 100*time.Millisecond):
			case <-n.stop:
				return
			}
			w.mu.Lock()
			w.recheck = false
			w.mu.Unlock()
			st, ok, ready := w.state()
			if cur := n.rooms.Room(r.Name()); cur == r && ok && ready {
				n.reconcileState(r, w, st, false)
			}
		})
	}
	for node := range ask {
		n.requestSnapshot(r, node)
	}
	for _, id := range gone {
		r.RemoveRemote(id, protocol.ReasonDisconnected)
	}
}
