package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/starling-rtc/starling/protocol"
	"github.com/starling-rtc/starling/room"
)

// Write-back after a cut. A node cut off from the bus for longer than the
// resume window finds, when its link comes back, that the others purged
// its members from the room state (failover.go, purgeLater); its calls
// went on meanwhile, so it writes those members back (reassert, called by
// reconcileState in watch.go). The room went on without them, though: the
// same identity may have joined another node, and others may have taken
// every slot of a room with a participant limit. The rule: what the
// connected part of the cluster admitted during the cut stands, and a
// member written back is held to the room's rules like a new join —
//
//   - it claims its identity again; if another member holds it (joined
//     during the cut, or joining now), the member written back is the older
//     duplicate and is ended here with leave "duplicate", as a second
//     join of an identity ends the first;
//   - in a room with a participant limit it claims a slot again; if none is
//     free it is ended here with leave "roomFull";
//   - only then is its member key written, and its identity checked once
//     more: a join of the same identity that replaced it between the claim
//     and the write may have found no member key to delete.
//
// An ended member's node emits its leave like any other, so every node
// converges to the same members: the state's, without it. A cut shorter
// than the resume window goes the same way when a join replaced one of
// the cut-off node's members meanwhile (the replaced member's key was
// deleted and the command to end it was lost with the link).

// reassert writes back this node's participants missing from a room's
// state for confirmAfter, and ends those the room no longer admits. It
// returns the members whose write-back failed on a store error (to try
// again).
func (n *Node) reassert(r *room.Room, missing []room.Member) (retry []room.Member) {
	if len(missing) == 0 {
		return nil
	}
	name := r.Name()
	maxP := n.rooms.MaxParticipants()
	added := 0
	for _, m := range missing {
		m.Node = n.id
		reason, err := n.writeBack(name, m, maxP)
		switch {
		case err != nil:
			n.log.Warn("room state: member not added back (trying again)", "room", name, "member", m.ID, "err", err)
			retry = append(retry, m)
		case reason != "":
			n.log.Info("room state: member lost while this node was cut off is not admitted any more", "room", name, "member", m.ID, "reason", reason)
			r.ApplyControl(room.Event{Type: room.CtlKick, ParticipantID: m.ID, Reason: reason})
		default:
			added++
		}
	}
	if added == 0 {
		return retry
	}
	p := roomKey(name)
	var sid string
	var created bool
	if err := n.retry(func(ctx context.Context) (err error) { sid, created, err = n.openRoom(ctx, p); return err }); err != nil {
		n.log.Warn("room state: room not reopened", "room", name, "err", err)
		return retry
	}
	if created && n.opts.OnRoomStarted != nil {
		n.opts.OnRoomStarted(name, sid)
	}
	n.log.Info("room state: added back members lost while this node was cut off", "room", name, "members", added)
	return retry
}

// writeBack writes one member back (see above). It returns the leave
// reason of a member the room no longer admits, "" when written back (or
// found written back by an earlier pass), or a store error.
func (n *Node) writeBack(name string, m room.Member, maxP int) (string, error) {
	p := roomKey(name)
	mkey := memberKey(p, n.id, m.ID)
	var cur memberEntry
	var rev uint64
	if err := n.retry(func(ctx context.Context) (err error) { rev, err = n.getJSON(ctx, mkey, &cur); return err }); err != nil {
		return "", err
	}
	if rev != 0 && cur.ID == m.ID {
		return "", nil // an earlier pass wrote it back
	}
	if m.Identity != "" {
		var dup bool
		if err := n.retry(func(ctx context.Context) (err error) { dup, err = n.reclaimIdentity(ctx, p, m); return err }); err != nil {
			return "", err
		}
		if dup {
			return protocol.ReasonDuplicate, nil
		}
	}
	unclaim := func() {
		if m.Identity != "" {
			n.releaseHeld(identityKey(p, m.Identity), m.ID)
		}
	}
	slot := -1
	var slotRev uint64
	if maxP > 0 {
		err := n.retry(func(ctx context.Context) (err error) {
			slot, slotRev, err = n.claimSlot(ctx, name, m, maxP)
			return err
		})
		if errors.Is(err, errFull) {
			unclaim()
			return protocol.ReasonRoomFull, nil
		}
		if err != nil {
			unclaim()
			return "", err
		}
	}
	data, _ := json.Marshal(memberEntry{Member: m, Slot: slot})
	err := n.retry(func(ctx context.Context) error {
		_, err := n.bus.kv.Create(ctx, mkey, data)
		if isConflict(err) {
			return nil // written meanwhile: its entry is checked below
		}
		return err
	})
	if err != nil {
		if slot >= 0 {
			n.releaseHeld(slotKey(p, slot), m.ID)
		}
		unclaim()
		return "", err
	}
	if slot >= 0 {
		if err := n.confirmSlot(p, slot, slotRev, m); err != nil { // slots.go
			// Taken back while this pass was stalled: the next pass
			// claims afresh.
			n.removeMember(name, mkey, m.ID)
			n.releaseHeld(slotKey(p, slot), m.ID)
			unclaim()
			return "", err
		}
	}
	if m.Identity != "" {
		// A join of the same identity that replaced this member after its
		// claim above and before its key was written found no key to
		// delete: the member would stay beside its replacement.
		var h holder
		var hrev uint64
		if err := n.retry(func(ctx context.Context) (err error) {
			hrev, err = n.getJSON(ctx, identityKey(p, m.Identity), &h)
			return err
		}); err != nil {
			return "", err // written back, unchecked: rare, and a join from now on finds its key
		}
		if hrev == 0 || h.ID != m.ID {
			n.removeMember(name, mkey, m.ID)
			return protocol.ReasonDuplicate, nil
		}
	}
	return "", nil
}

// reclaimIdentity makes member m, written back, the holder of its
// identity again. dup reports that another member holds it: one with a
// member key, or one whose claim is recent (its join is under way). A
// claim older than staleSlot whose holder has no member key was left by
// a node that died within a join; it is taken.
func (n *Node) reclaimIdentity(ctx context.Context, p string, m room.Member) (dup bool, err error) {
	key := identityKey(p, m.Identity)
	val, _ := json.Marshal(holder{ID: m.ID, Node: m.Node})
	based := uint64(0) // the revision the last write expected: 0 for a create
	_, err = n.bus.kv.Create(ctx, key, val)
	for i := 0; i < casRetries; i++ {
		if err == nil {
			return false, nil
		}
		if !isConflict(err) {
			return false, err
		}
		// What beat this write, once the leader has it (conflict.go).
		msg, gerr := n.leaderAfterConflict(ctx, key, based)
		if gerr != nil {
			return false, gerr
		}
		if msg == nil {
			based = 0
			_, err = n.bus.kv.Create(ctx, key, val) // released meanwhile
			continue
		}
		var h holder
		if json.Unmarshal(msg.Data, &h) != nil {
			return false, errors.New("room state: unreadable value of " + key)
		}
		if h.ID == m.ID {
			return false, nil // never released, or an earlier try landed
		}
		var other memberEntry
		orev, gerr := n.getJSON(ctx, memberKey(p, h.Node, h.ID), &other)
		if gerr != nil {
			return false, gerr
		}
		if orev != 0 || time.Since(msg.Time) < staleSlot {
			return true, nil
		}
		based = msg.Seq
		if _, err = n.bus.kv.Update(ctx, key, val, msg.Seq); err == nil {
			n.log.Info("room state: took back an identity held by no member", "identity", m.Identity, "from", h.ID)
			return false, nil
		}
	}
	return false, errors.New("room state: too much contention on an identity")
}
