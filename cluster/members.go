package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"time"

	"github.com/starling-rtc/starling/protocol"
	"github.com/starling-rtc/starling/room"
)

// Joining and leaving, one member at a time, on the keys of keys.go. A
// join claims the identity (replacing a member that holds it), a slot when
// the room has a participant limit (at once: they do not depend on each
// other), then writes the member's own key, and last looks at the room
// (created, or reopened if it was being closed). The
// member's key is written before the room is looked at, so a node closing
// the room (closeLater: it lists the members after the room's key said
// "empty") either sees the member or loses its compare-and-set on the
// room's key to the join. Each step is idempotent, so a step whose write
// timed out is simply tried again.

// errFull: every slot of the room is held.
var errFull = errors.New("room full")

// staleSlot is how old a slot held by no member key must be before a
// join takes it back (a node that died between claiming it and writing
// its member's key).
const staleSlot = 10 * time.Second

// retry runs step until it succeeds, fails for good (errFull, a protocol
// error) or the store has been unavailable for Options.StoreWait.
func (n *Node) retry(step func(ctx context.Context) error) error {
	ctx, cancel := context.WithTimeout(n.lastOut, n.opts.StoreWait) // lastout.go
	defer cancel()
	return n.retryCtx(ctx, kvTimeout, step)
}

// retryCtx is retry until parent ends (its last error then), each try
// bounded by op.
func (n *Node) retryCtx(parent context.Context, op time.Duration, step func(ctx context.Context) error) error {
	for {
		ctx, cancel := context.WithTimeout(parent, op)
		err := step(ctx)
		cancel()
		var perr *protocol.Error
		if err == nil || errors.Is(err, errFull) || errors.As(err, &perr) || n.bus.nc.IsClosed() {
			return err
		}
		select {
		case <-parent.Done():
			return err
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// Join implements room.Bus: it adds m to the room's members, creating the
// room (a new sid) if it does not exist or has been empty past the empty
// timeout, refusing it when the room is full, and replacing a member with
// the same identity (that one's node ends it with "duplicate").
func (n *Node) Join(name string, m room.Member, maxParticipants int) (string, error) {
	n.rs.follow(n, name) // before the write: no event after it can be missed
	sid, err := n.join(name, m, maxParticipants)
	switch {
	case errors.Is(err, errFull):
		return "", protocol.Errorf(protocol.CodeTooLarge, "room %q is full: %d participants", name, maxParticipants)
	case err != nil:
		n.log.Error("cluster room state", "room", name, "err", err)
		return "", protocol.Errorf(protocol.CodeUnavailable, "cluster room state is unavailable; try again")
	}
	if m.Identity != "" {
		n.checkIdentityLater(name, m.ID) // identitycheck.go
	}
	if f := n.places.Load(); f != nil {
		(*f)(name, m.ID, true) // tests: the room's places held at once (export_test.go)
	}
	if f := n.joinReturns.Load(); f != nil {
		(*f)() // tests: the participant is admitted late (export_test.go)
	}
	return sid, nil
}

func (n *Node) join(name string, m room.Member, maxParticipants int) (string, error) {
	p := roomKey(name)
	m.Node = n.id
	mkey := memberKey(p, n.id, m.ID)
	putMember := func(slot int) error {
		data, _ := json.Marshal(memberEntry{Member: m, Slot: slot})
		return n.retry(func(ctx context.Context) error {
			_, err := n.bus.kv.Put(ctx, mkey, data)
			return err
		})
	}
	// The identity, a slot and (in a room without a limit) the member's
	// key do not depend on each other: one round trip for the three.
	var (
		old                   holder
		slot                  = -1
		slotRev               uint64
		idErr, slotErr, mkErr error
		wg                    sync.WaitGroup
		look                  func() (string, bool) // the room's key read beside the member's write
	)
	if maxParticipants > 0 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			slotErr = n.retry(func(ctx context.Context) (err error) {
				slot, slotRev, err = n.claimSlot(ctx, name, m, maxParticipants)
				return err
			})
		}()
	} else {
		wg.Add(1)
		go func() { defer wg.Done(); mkErr = putMember(-1) }()
		look = n.peekRoom(p)
	}
	if m.Identity != "" {
		idErr = n.retry(func(ctx context.Context) (err error) { old, err = n.claimIdentity(ctx, p, m); return err })
	}
	wg.Wait()
	if f := n.slotClaimed.Load(); f != nil && slot >= 0 {
		(*f)() // tests: the node dies here (export_test.go)
	}
	undo := func() { // free what this join holds
		if slot >= 0 {
			n.releaseHeld(slotKey(p, slot), m.ID)
		}
		if m.Identity != "" && idErr == nil {
			n.releaseHeld(identityKey(p, m.Identity), m.ID)
		}
		n.removeMember(name, mkey, m.ID)
	}
	if idErr != nil || mkErr != nil || (slotErr != nil && !errors.Is(slotErr, errFull)) {
		// Answer now and free what the join may hold meanwhile: with the
		// store out of reach each deletion waits for it as long again
		// (store_wait), and the join was answered after three times that
		// (26 s with the bus down, past the 15 s a client waits for a
		// node). What it frees is its own member's (releaseHeld and
		// removeMember act on m.ID only), so a join tried again meanwhile
		// is not touched.
		// Refused once the node closes: the others purge a gone node's
		// members and take back their slots.
		n.spawn(undo)
		return "", errors.Join(idErr, mkErr, slotErr)
	}
	var oldEntry memberEntry
	var oldRev uint64
	if old.ID != "" {
		_ = n.retry(func(ctx context.Context) (err error) {
			oldRev, err = n.getJSON(ctx, memberKey(p, old.Node, old.ID), &oldEntry)
			return err
		})
	}
	tookOld := false
	if errors.Is(slotErr, errFull) {
		// A full room still takes a member replacing one with its identity:
		// in the replaced member's slot.
		if oldRev != 0 && oldEntry.Slot >= 0 && n.takeSlot(p, oldEntry.Slot, oldEntry.ID, m) {
			slot, slotErr, tookOld = oldEntry.Slot, nil, true
		} else {
			undo()
			return "", errFull
		}
	}
	if maxParticipants > 0 {
		look = n.peekRoom(p)
		err := putMember(slot)
		if err == nil {
			// Taken back meanwhile (a stall, a cut: slotAbandoned)? Then
			// this join undoes itself (slotconfirm.go).
			if tookOld {
				slotRev = 0 // moved by takeSlot: read it first
			}
			err = n.confirmSlot(p, slot, slotRev, m)
		}
		if err != nil {
			look()
			undo()
			return "", err
		}
	}
	sid, ok := look()
	var created bool
	if !ok {
		if err := n.retry(func(ctx context.Context) (err error) { sid, created, err = n.openRoom(ctx, p); return err }); err != nil {
			undo()
			return "", err
		}
	}
	if created && n.opts.OnRoomStarted != nil {
		n.log.Info("room opened in the cluster", "room", name, "sid", sid)
		n.opts.OnRoomStarted(name, sid)
	}
	if oldRev != 0 && oldEntry.ID != m.ID {
		deleted := false
		_ = n.retry(func(ctx context.Context) error {
			_, err := n.kvDelete(ctx, memberKey(p, oldEntry.Node, oldEntry.ID), oldRev)
			if isConflict(err) {
				return nil // it left, or moved, meanwhile
			}
			deleted = err == nil
			return err
		})
		if oldEntry.Slot >= 0 && !tookOld {
			n.releaseHeld(slotKey(p, oldEntry.Slot), oldEntry.ID)
		}
		if oldEntry.Node != n.id { // a replaced member here is ended by the room itself
			var replaced *room.Member // its participant_left, if its node is dead (deadmembers.go)
			if deleted {
				replaced = &oldEntry.Member
			}
			n.control(oldEntry.Node, name, room.Event{Type: room.CtlKick, ParticipantID: oldEntry.ID, Reason: protocol.ReasonDuplicate}, replaced)
		}
	}
	return sid, nil
}

// peekRoom reads the room's key while the join writes its member key, and
// returns a function that gives the room's sid if that read alone is
// enough: the room was open and not being closed, and the member's key
// was written within half the empty timeout of the read. A room is
// closed only an empty timeout after it was marked empty, and the mark
// came after this read (it did not show one), so the closing node lists
// the members after this member's key was written, and sees it. Else
// (called after the write) openRoom looks again.
func (n *Node) peekRoom(p string) func() (string, bool) {
	start := time.Now()
	done := make(chan struct{})
	var meta roomMeta
	var rev uint64
	var err error
	go func() {
		defer close(done)
		ctx, cancel := context.WithTimeout(context.Background(), kvTimeout)
		defer cancel()
		rev, err = n.getJSON(ctx, p, &meta)
	}()
	return func() (string, bool) {
		written := time.Since(start)
		<-done
		if err != nil || rev == 0 || meta.EmptySince != 0 || meta.Closed || meta.SID == "" || written >= n.opts.EmptyTimeout/2 {
			return "", false
		}
		return meta.SID, true
	}
}

// claimIdentity makes m the holder of its identity; it returns the member
// that held it before (zero if none). An earlier try of the same join that
// landed is recognised, and still gives the member it replaced.
func (n *Node) claimIdentity(ctx context.Context, p string, m room.Member) (holder, error) {
	prev, _, err := n.claimIdentityTries(ctx, p, m)
	return prev, err
}

// claimIdentityTries is claimIdentity, and how many writes it made. After
// a refused write it reads the identity once the leader holds the write
// it lost to (conflict.go): it read "none" for an identity another node
// was claiming at that moment and created it again at once, refused as
// long as that write was in flight.
func (n *Node) claimIdentityTries(ctx context.Context, p string, m room.Member) (prev holder, tries int, err error) {
	key := identityKey(p, m.Identity)
	val, _ := json.Marshal(holder{ID: m.ID, Node: m.Node})
	based := uint64(0) // the revision the last write expected: 0 for a create
	_, err = n.bus.kv.Create(ctx, key, val)
	for tries = 1; ; tries++ {
		if err == nil {
			return prev, tries, nil
		}
		if !isConflict(err) {
			return holder{}, tries, err
		}
		if tries == casRetries {
			return holder{}, tries, errors.New("room state: too much contention on an identity")
		}
		var h holder
		rev, gerr := n.getJSONAfterConflict(ctx, key, based, &h)
		if gerr != nil {
			return holder{}, tries, gerr
		}
		if rev == 0 { // released meanwhile
			prev, based = holder{}, 0
			_, err = n.bus.kv.Create(ctx, key, val)
			continue
		}
		if h.ID == m.ID { // an earlier try of this join landed
			if h.Replaced != nil {
				return *h.Replaced, tries, nil
			}
			return holder{}, tries, nil
		}
		prev, based = holder{ID: h.ID, Node: h.Node}, rev
		took, _ := json.Marshal(holder{ID: m.ID, Node: m.Node, Replaced: &prev})
		_, err = n.bus.kv.Update(ctx, key, took, rev)
	}
}

// releaseHeld deletes an identity or slot key if id still holds it.
func (n *Node) releaseHeld(key, id string) {
	_ = n.retry(func(ctx context.Context) error {
		var h holder
		rev, err := n.getJSON(ctx, key, &h)
		if err != nil || rev == 0 || h.ID != id {
			return err
		}
		_, err = n.kvDelete(ctx, key, rev)
		if isConflict(err) {
			return nil // taken by another member meanwhile
		}
		return err
	})
}

// openRoom returns the room's sid, creating the room when there is none
// (or it has been empty past the empty timeout: its closer died; or the
// admin API deleted it), and
// clearing its "empty since" when it is being closed.
func (n *Node) openRoom(ctx context.Context, p string) (sid string, created bool, err error) {
	var meta roomMeta
	rev, err := n.getJSON(ctx, p, &meta)
	for i := 0; ; i++ {
		if err != nil {
			return "", false, err
		}
		if rev != 0 && meta.EmptySince == 0 && !meta.Closed && meta.SID != "" {
			return meta.SID, false, nil // the common case: no write
		}
		if i == casRetries {
			return "", false, errors.New("room state: too much contention on the room")
		}
		next := roomMeta{SID: meta.SID}
		expired := meta.EmptySince != 0 && time.Since(time.UnixMilli(meta.EmptySince)) > n.opts.EmptyTimeout+closeGrace
		if rev == 0 || next.SID == "" || expired || meta.Closed { // a deleted room is not reopened: a new one takes its place
			next.SID = newSID()
		}
		if meta.Closed {
			next.PrevClosedBy = meta.ClosedBy // closeroom.go
		}
		data, _ := json.Marshal(next)
		if rev == 0 {
			_, err = n.bus.kv.Create(ctx, p, data)
		} else {
			_, err = n.bus.kv.Update(ctx, p, data, rev)
		}
		if err == nil {
			return next.SID, next.SID != meta.SID, nil
		}
		if !isConflict(err) {
			return "", false, err
		}
		// Read what beat this write, once the leader has it (conflict.go):
		// read at once, it could still be what this write was based on.
		meta = roomMeta{}
		rev, err = n.getJSONAfterConflict(ctx, p, rev, &meta)
	}
}

// closeGrace is how long past the empty timeout a room marked empty is
// still left to the node that is to close it.
const closeGrace = 5 * time.Second
