package cluster

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/starling-rtc/starling/room"
)

// roomState is a room's cluster-wide facts, one key-value entry per room,
// changed only by compare-and-set: the sid, and every member with its
// identity and node (max participants, duplicates, who closes the room).
type roomState struct {
	SID     string        `json:"sid"`
	Members []room.Member `json:"members"`
	// EmptySince is when the last member left (unix ms); 0 while occupied.
	// A room empty for longer than the empty timeout counts as closed even
	// if the node that was to delete it died.
	EmptySince int64 `json:"emptySince,omitempty"`
}

// roomKey encodes a room name as a key-value key and subject token.
func roomKey(name string) string {
	return "r" + base64.RawURLEncoding.EncodeToString([]byte(name))
}

func newSID() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return "RM_" + hex.EncodeToString(b[:])
}

// kvTimeout bounds one key-value operation.
const kvTimeout = 5 * time.Second

// unavailableWait bounds how long a change waits for the store to answer.
const unavailableWait = 8 * time.Second

// casRetries bounds compare-and-set retries under contention.
const casRetries = 100

// errNoChange makes update skip the write.
var errNoChange = errors.New("no change")

// update applies f to a room's state with compare-and-set, retrying on
// conflicts; f sees a zero state for a room that does not exist.
func (n *Node) update(name string, f func(st *roomState, exists bool) error) (roomState, error) {
	return n.updateCtx(context.Background(), kvTimeout, name, f)
}

// updateCtx is update within ctx, each store operation bounded by op: it
// gives up (ctx's error) when ctx ends,
// on a store that does not answer and on a compare-and-set that keeps
// failing alike. A store without a leader (or a replica behind it) answers
// "wrong last sequence", which looks like contention: without ctx, those
// retries alone could outlast a resuming client's patience (a takeover).
func (n *Node) updateCtx(parent context.Context, op time.Duration, name string, f func(st *roomState, exists bool) error) (roomState, error) {
	key := roomKey(name)
	// The store is briefly unavailable while its stream elects a new
	// leader (a node died or was cut off): wait for it rather than fail.
	deadline := time.Now().Add(unavailableWait)
	transient := func(err error) bool {
		if time.Now().After(deadline) || n.bus.nc.IsClosed() { // a crashed node's bus never comes back
			return false
		}
		select {
		case <-time.After(250 * time.Millisecond):
			return true
		case <-parent.Done():
			return false
		}
	}
	for i := 0; i < casRetries; i++ {
		if err := parent.Err(); err != nil {
			return roomState{}, fmt.Errorf("room state: %w", err)
		}
		ctx, cancel := context.WithTimeout(parent, op)
		var st roomState
		var rev uint64
		e, err := n.bus.kv.Get(ctx, key)
		switch {
		case err == nil:
			rev = e.Revision()
			if json.Unmarshal(e.Value(), &st) != nil {
				st = roomState{}
			}
		case errors.Is(err, jetstream.ErrKeyNotFound):
		default:
			cancel()
			if transient(err) {
				continue
			}
			return st, fmt.Errorf("room state: %w", err)
		}
		if err := f(&st, rev != 0); err != nil {
			cancel()
			if errors.Is(err, errNoChange) {
				return st, nil
			}
			return st, err
		}
		data, _ := json.Marshal(st)
		if rev == 0 {
			_, err = n.bus.kv.Create(ctx, key, data)
		} else {
			_, err = n.bus.kv.Update(ctx, key, data, rev)
		}
		cancel()
		if err == nil {
			return st, nil
		}
		if !errors.Is(err, jetstream.ErrKeyExists) && !errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			if transient(err) { // a write that timed out may have landed: f is idempotent
				continue
			}
			return st, fmt.Errorf("room state: %w", err)
		}
		time.Sleep(time.Duration(1+i) * time.Millisecond) // contention: back off a little
	}
	return roomState{}, errors.New("room state: too much contention")
}

// read reads a room's state within ctx; jetstream.ErrKeyNotFound when absent.
func (n *Node) read(parent context.Context, name string) (roomState, error) {
	ctx, cancel := context.WithTimeout(parent, kvTimeout)
	defer cancel()
	e, err := n.bus.kv.Get(ctx, roomKey(name))
	if err != nil {
		return roomState{}, err
	}
	var st roomState
	if err := json.Unmarshal(e.Value(), &st); err != nil {
		return roomState{}, err
	}
	return st, nil
}

// get reads a room's state (zero state, false when absent).
func (n *Node) get(name string) (roomState, uint64, bool) {
	ctx, cancel := context.WithTimeout(context.Background(), kvTimeout)
	defer cancel()
	e, err := n.bus.kv.Get(ctx, roomKey(name))
	if err != nil {
		return roomState{}, 0, false
	}
	var st roomState
	if json.Unmarshal(e.Value(), &st) != nil {
		return roomState{}, 0, false
	}
	return st, e.Revision(), true
}

// Join implements room.Bus: it adds m to the room's members, creating the
// room (a new sid) if it does not exist or has been empty past the empty
// timeout, refusing it when the room is full, and replacing a member with
// the same identity (that one's node ends it with "duplicate"). The write
// goes with the other changes of the room queued on this node (batch.go).
func (n *Node) Join(name string, m room.Member, maxParticipants int) (string, error) {
	n.rs.follow(n, name) // before the write: no event after it can be missed
	op := &roomOp{join: true, m: m, max: maxParticipants, done: make(chan opResult, 1)}
	n.submit(name, op)
	r := <-op.done
	return r.sid, r.err
}

// Leave implements room.Bus: it removes the member in the background and,
// when the room is then empty everywhere, closes it after the empty
// timeout unless someone joined meanwhile.
func (n *Node) Leave(name string, m room.Member) {
	n.submit(name, &roomOp{m: m})
}

// closeLater deletes an empty room's state after the empty timeout if it
// is still empty then: the room is closed for the whole cluster.
func (n *Node) closeLater(name string) {
	select {
	case <-time.After(n.opts.EmptyTimeout):
	case <-n.stop:
		return
	}
	st, rev, ok := n.get(name)
	if !ok || len(st.Members) > 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), kvTimeout)
	defer cancel()
	if err := n.bus.kv.Delete(ctx, roomKey(name), jetstream.LastRevision(rev)); err == nil {
		n.log.Info("room closed in the cluster", "room", name, "sid", st.SID)
		n.roomFinished(name, st.SID)
	}
}

// purgeNode removes a node's members from every room (a dead node, or
// this node's own leftovers from before a restart).
func (n *Node) purgeNode(node string) {
	ctx, cancel := context.WithTimeout(context.Background(), kvTimeout)
	lister, err := n.bus.kv.ListKeys(ctx)
	if err != nil {
		cancel()
		return
	}
	var keys []string
	for k := range lister.Keys() {
		keys = append(keys, k)
	}
	cancel()
	for _, k := range keys {
		if !strings.HasPrefix(k, "r") {
			continue // not a room (a recording claim: recording.go)
		}
		raw, err := base64.RawURLEncoding.DecodeString(k[1:])
		if err != nil {
			continue
		}
		name := string(raw)
		emptied := false
		_, _ = n.update(name, func(st *roomState, exists bool) error {
			emptied = false
			kept := st.Members[:0]
			for _, o := range st.Members {
				if o.Node != node {
					kept = append(kept, o)
				}
			}
			if !exists || len(kept) == len(st.Members) {
				return errNoChange
			}
			st.Members = kept
			if len(kept) == 0 {
				st.EmptySince = time.Now().UnixMilli()
				emptied = true
			}
			return nil
		})
		if emptied {
			n.wg.Add(1)
			go func() { defer n.wg.Done(); n.closeLater(name) }()
		}
	}
}

// RoomSID returns the sid of a room open anywhere in the cluster.
func (n *Node) RoomSID(name string) (string, bool) {
	st, _, ok := n.get(name)
	return st.SID, ok
}
