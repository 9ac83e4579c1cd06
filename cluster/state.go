package cluster

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"strings"
	"time"

	"github.com/starling-rtc/starling/protocol"
	"github.com/starling-rtc/starling/room"
)

// roomState is a room's cluster-wide facts as read from its keys (keys.go):
// the sid, and every member with its identity and node.
type roomState struct {
	SID     string
	Members []room.Member
	// EmptySince is when the room was seen empty (unix ms); 0 while occupied.
	EmptySince int64
	// Closed: deleted through the admin API (roomMeta.Closed).
	Closed bool
	// holders: which member holds each identity, by identity key.
	holders map[string]string
}

func newSID() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return "RM_" + hex.EncodeToString(b[:])
}

// kvTimeout bounds one key-value operation.
const kvTimeout = 5 * time.Second

// DefaultStoreWait bounds how long a change waits for the store to answer
// (Options.StoreWait, cluster.store_wait): long enough for a new stream
// leader to be elected after a node died.
const DefaultStoreWait = 8 * time.Second

// casRetries bounds compare-and-set retries under contention.
const casRetries = 100

// get reads a room's state (false when there is no such room): from the
// room's watch when this node follows it, else from the store, waiting
// (up to unavailableWait) for a store that cannot answer: right after a
// node died, a read may fail until the stream has a new leader, and the
// admin API of a node without a part of the room answered 404 for a room
// that exists (TestKickOfKilledNodesParticipant).
func (n *Node) get(name string) (roomState, bool) {
	if w := n.rs.watch(name); w != nil {
		if st, ok, ready := w.state(); ready {
			return st, ok
		}
	}
	var v *roomView
	err := n.retry(func(ctx context.Context) (err error) {
		if v, err = n.readViewCtx(ctx, name); err != nil || v.meta != nil {
			return err
		}
		// No room in the view: make sure with the stream leader's read,
		// since a view read while the stream changes leader may miss keys.
		var meta roomMeta
		rev, err := n.getJSON(ctx, roomKey(name), &meta)
		if err == nil && rev != 0 {
			err = errRetry
		}
		return err
	})
	if err != nil {
		return roomState{}, false
	}
	return v.state()
}

// Leave implements room.Bus: it removes the member in the background and,
// when the room is then empty everywhere, closes it after the empty
// timeout unless someone joined meanwhile.
func (n *Node) Leave(name string, m room.Member) {
	if f := n.places.Load(); f != nil {
		(*f)(name, m.ID, false) // tests: before its slot is released (export_test.go)
	}
	w := n.rs.hold(n, name) // its view tells whether the room is empty after this leave
	if !n.spawn(func() {
		defer n.rs.release(name)
		seq, ok := n.removeMember(name, memberKey(roomKey(name), m.Node, m.ID), m.ID)
		if ok {
			n.maybeEmpty(name, w, seq)
		}
	}) {
		// This node is closing (the rooms are shut down before Close):
		// the others purge its members once it is gone.
		n.rs.release(name)
	}
}

// removeMember deletes a member's key (if it still holds id) and releases
// its slot and identity; it returns the stream sequence of the deletion.
func (n *Node) removeMember(name, key, id string) (uint64, bool) {
	_, seq, ok := n.removeMemberEntry(name, key, id)
	return seq, ok
}

// removeMemberEntry is removeMember that also returns the member removed.
func (n *Node) removeMemberEntry(name, key, id string) (memberEntry, uint64, bool) {
	p := roomKey(name)
	var e memberEntry
	var seq uint64
	err := n.retry(func(ctx context.Context) error {
		rev, err := n.getJSON(ctx, key, &e)
		if err != nil || rev == 0 || e.ID != id {
			seq = 0
			return err
		}
		seq, err = n.kvDelete(ctx, key, rev)
		if isConflict(err) {
			return errRetry // changed meanwhile (its token): read it again
		}
		return err
	})
	if err != nil {
		if key == memberKey(p, n.id, id) { // this node's own: a purge of another node's is done again by its own rules
			n.log.Warn("room state: member not removed (trying again later)", "room", name, "member", id, "err", err)
			n.unremoved.add(key, name, id) // removals.go
		} else {
			n.log.Warn("room state: member not removed", "room", name, "member", id, "err", err)
		}
		return memberEntry{}, 0, false
	}
	n.unremoved.done(key)
	if seq == 0 {
		return memberEntry{}, 0, false // gone already (replaced, moved, purged)
	}
	if e.Slot >= 0 {
		n.releaseHeld(slotKey(p, e.Slot), id)
	}
	if e.Identity != "" {
		n.releaseHeld(identityKey(p, e.Identity), id)
	}
	return e, seq, true
}

// errRetry makes retry try a step again.
var errRetry = errors.New("changed meanwhile")

// maybeEmpty marks the room empty (and closes it later) when it has no
// member left once w's view has caught up with deletion seq; without a
// view that catches up in time, the members are read from the store.
func (n *Node) maybeEmpty(name string, w *roomWatch, seq uint64) {
	empty, known := false, false
	if w != nil {
		empty, known = w.emptyAfter(seq, kvTimeout, n.stop)
	}
	if !known {
		v, err := n.readView(name)
		if err != nil {
			return
		}
		empty = len(v.members) == 0
	}
	if !empty {
		return
	}
	p := roomKey(name)
	marked := false
	_ = n.retry(func(ctx context.Context) error {
		var meta roomMeta
		rev, err := n.getJSON(ctx, p, &meta)
		if err != nil || rev == 0 {
			return err
		}
		if meta.Closed {
			return nil // deleted by the admin: its closer deletes the key (finishClosed)
		}
		if meta.EmptySince != 0 {
			marked = true
			return nil
		}
		meta.EmptySince = time.Now().UnixMilli()
		data, _ := json.Marshal(meta)
		if _, err := n.bus.kv.Update(ctx, p, data, rev); err != nil {
			if isConflict(err) {
				return errRetry
			}
			return err
		}
		marked = true
		return nil
	})
	if marked {
		n.spawn(func() { n.closeLater(name) })
	}
}

// closeLater deletes an empty room's key after the empty timeout if it is
// still marked empty and has no member: the room is closed for the whole
// cluster. A member that joined meanwhile either wrote its key before the
// members are read here, or its join's compare-and-set on the room's key
// reopens it, and the deletion here (at the revision read) fails.
func (n *Node) closeLater(name string) {
	select {
	case <-time.After(n.opts.EmptyTimeout):
	case <-n.stop:
		return
	}
	p := roomKey(name)
	ctx, cancel := context.WithTimeout(context.Background(), kvTimeout)
	defer cancel()
	var meta roomMeta
	rev, err := n.getJSON(ctx, p, &meta)
	if err != nil || rev == 0 || meta.EmptySince == 0 || meta.Closed {
		return
	}
	v, err := n.readView(name)
	if err != nil {
		return
	}
	if len(v.members) > 0 {
		meta.EmptySince = 0 // not empty after all: unmark, or a join would take it for closed
		data, _ := json.Marshal(meta)
		_, _ = n.bus.kv.Update(ctx, p, data, rev)
		return
	}
	if _, err := n.kvDelete(ctx, p, rev); err == nil {
		n.log.Info("room closed in the cluster", "room", name, "sid", meta.SID)
		n.roomFinished(name, meta.SID)
	}
}

// purgeNode removes a node's members from every room (a dead node, or
// this node's own leftovers from before a restart).
func (n *Node) purgeNode(node string) {
	// The dead node may have led the stream: retry waits for a new leader.
	keys, err := n.listKeys(n.retry, "*.m."+enc(node)+".*")
	if err != nil {
		n.log.Warn("room state: a gone node's members not listed for removal", "node", node, "err", err)
		return
	}
	emptied := map[string]bool{}
	for _, k := range keys {
		p, rest, ok := strings.Cut(k, ".m.")
		if !ok || !strings.HasPrefix(p, "r") {
			continue
		}
		raw, err1 := base64.RawURLEncoding.DecodeString(p[1:])
		_, idEnc, _ := strings.Cut(rest, ".")
		id, err2 := base64.RawURLEncoding.DecodeString(idEnc)
		if err1 != nil || err2 != nil {
			continue
		}
		if e, _, ok := n.removeMemberEntry(string(raw), k, string(id)); ok {
			emptied[string(raw)] = true
			n.memberGone(string(raw), e.Member, protocol.ReasonDisconnected) // deadmembers.go
		}
	}
	for name := range emptied {
		n.maybeEmpty(name, nil, 0)
	}
}

// RoomSID returns the sid of a room open anywhere in the cluster.
func (n *Node) RoomSID(name string) (string, bool) {
	st, ok := n.get(name)
	return st.SID, ok
}

// listKeys lists the room state's keys matching filter, each try through
// retry (n.retry, or one bounded by a context of the caller's).
func (n *Node) listKeys(retry func(func(context.Context) error) error, filter string) ([]string, error) {
	var keys []string
	err := retry(func(ctx context.Context) error {
		lister, err := n.bus.kv.ListKeysFiltered(ctx, filter)
		if err != nil {
			return err
		}
		keys = keys[:0]
		// The lister closes its channel only after stopping its watch,
		// which asks the store to delete the watch's consumer and waits
		// up to 5 s for an answer that does not come without a store
		// majority (a cluster's last nodes stopping; a node's Close waited
		// for it): the listing ends with ctx instead, and the lister
		// finishes on its own.
		for {
			select {
			case k, ok := <-lister.Keys():
				if !ok {
					return nil
				}
				keys = append(keys, k)
			case <-ctx.Done():
				go func() { // its sends must not block for good
					for range lister.Keys() {
					}
				}()
				return ctx.Err()
			}
		}
	})
	return keys, err
}
