package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/starling-rtc/starling/room"
)

// Participant slots of a room with a limit (keys.go: P.s.<n>, n < max):
// a join claims a free one, a leave releases its own, and a slot held by
// no member key (its node died, or was cut off, between claiming it and
// writing its member) is taken back.

// takeSlot moves slot s from member oldID to m.
func (n *Node) takeSlot(p string, s int, oldID string, m room.Member) bool {
	val, _ := json.Marshal(holder{ID: m.ID, Node: m.Node})
	return n.retry(func(ctx context.Context) error {
		var h holder
		rev, err := n.getJSON(ctx, slotKey(p, s), &h)
		switch {
		case err != nil:
			return err
		case rev == 0 || (h.ID != oldID && h.ID != m.ID):
			return errFull // released and taken meanwhile
		case h.ID == m.ID:
			return nil
		}
		if _, err := n.bus.kv.Update(ctx, slotKey(p, s), val, rev); isConflict(err) {
			return errRetry
		} else {
			return err
		}
	}) == nil
}

// claimSlot gives m one of the room's max slots, a free one, tried in
// random order (joins on several nodes at once rarely pick the same), and
// returns the slot key's revision (0: not known, an earlier try's claim);
// errFull when every slot is held.
func (n *Node) claimSlot(ctx context.Context, name string, m room.Member, maxP int) (int, uint64, error) {
	p := roomKey(name)
	val, _ := json.Marshal(holder{ID: m.ID, Node: m.Node})
	taken := map[int]string{}
	w := n.rs.watch(name)
	if w != nil {
		taken = w.slotsTaken()
	}
	for s, id := range taken {
		if id == m.ID {
			return s, 0, nil // an earlier try of this join got it
		}
	}
	authoritative := false
	for round := 0; round < casRetries; round++ {
		free := make([]int, 0, maxP)
		for s := 0; s < maxP; s++ {
			if _, held := taken[s]; !held {
				free = append(free, s)
			}
		}
		rand.Shuffle(len(free), func(i, j int) { free[i], free[j] = free[j], free[i] })
		for _, s := range free {
			if _, held := taken[s]; held {
				continue // seen taken meanwhile
			}
			rev, err := n.bus.kv.Create(ctx, slotKey(p, s), val)
			if err == nil {
				return s, rev, nil
			}
			if !isConflict(err) {
				return -1, 0, err
			}
			taken[s] = "?"
			// A conflict costs a round trip: skip what the watch has seen
			// taken since (the other joins of a storm), not only this one.
			if w != nil {
				for s, id := range w.slotsTaken() {
					if id == m.ID {
						return s, 0, nil
					}
					taken[s] = id
				}
			}
		}
		if authoritative && len(free) == 0 {
			return -1, 0, errFull
		}
		// What this node knew is used up: read the slots as they are, and
		// take back those held by no member for a while.
		slots, err := n.sharedReadSlots(ctx, name)
		if err != nil {
			return -1, 0, err
		}
		taken = map[int]string{}
		for s, e := range slots {
			if e.id == m.ID {
				return s, e.rev, nil
			}
			if n.slotAbandoned(e) {
				if _, err := n.kvDelete(ctx, slotKey(p, s), e.rev); err == nil {
					n.log.Info("room state: took back a slot held by no member", "room", name, "slot", s)
					continue
				}
			}
			taken[s] = e.id
		}
		authoritative = true
	}
	return -1, 0, errors.New("room state: too much contention on the room's slots")
}

// slotReads shares one read of a room's slots among the joins of this node
// that find the room full at the same time (the end of a join storm).
type slotReads struct {
	mu    sync.Mutex
	reads map[string]*slotRead
}

type slotRead struct {
	done  chan struct{}
	slots map[int]slotState
	err   error
}

// sharedReadSlots is readSlots, joined with one in flight for the room.
func (n *Node) sharedReadSlots(ctx context.Context, name string) (map[int]slotState, error) {
	sr := &n.slotReads
	sr.mu.Lock()
	if r := sr.reads[name]; r != nil {
		sr.mu.Unlock()
		select {
		case <-r.done:
			return r.slots, r.err
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	if sr.reads == nil {
		sr.reads = map[string]*slotRead{}
	}
	r := &slotRead{done: make(chan struct{})}
	sr.reads[name] = r
	sr.mu.Unlock()
	r.slots, r.err = n.readSlots(ctx, name)
	sr.mu.Lock()
	delete(sr.reads, name)
	sr.mu.Unlock()
	close(r.done)
	return r.slots, r.err
}

// slotState is one held slot as readSlots finds it.
type slotState struct {
	id      string
	node    string // the holder's node
	rev     uint64
	created time.Time
	member  bool // the holder has a member key
}

// slotAbandoned reports whether a slot is held by no member and left so:
// claimed more than staleSlot ago, or by a node this node has found gone
// (silent past the heartbeat expiry, 3.5 s, and not heard since) while
// its own bus link was steady. A join writes its member right after its
// slot, so a slot without a member that old, or of a node that went
// silent, was left by a node that died (or was cut off) in the middle of
// a join. A dead node's slots used to wait for staleSlot and for a join
// that found the room full: within those 10 s the room refused joins with
// a place free, and without such a join the key stayed for good
// (TestDeadJoinSlotFreed).
func (n *Node) slotAbandoned(e slotState) bool {
	if e.member {
		return false
	}
	if time.Since(e.created) > n.staleSlotAge() {
		return true
	}
	_, gone := n.lost.Load(e.node)
	return gone && e.node != n.id && n.busSteady()
}

// reclaimSlotsLater runs reclaimSlotsOf once this node's own bus link has
// been up long enough to hear the others (a node whose link just came
// back takes live nodes for gone).
func (n *Node) reclaimSlotsLater(node string) {
	n.spawn(func() {
		for !n.busSteady() {
			select {
			case <-time.After(hbInterval):
			case <-n.stop:
				return
			}
		}
		n.reclaimSlotsOf(node)
	})
}

// reclaimSlotsOf frees the slots (and identities) a node found gone holds
// without a member key, in every room this node watches, read from the
// store: the node died between claiming a slot and writing its member. Its members' own
// slots go with them, when they are purged after the resume window.
// Every live node does this; the deletions are at the revision read, so
// one of them lands. The gone node may have led the store's stream, or
// hosted the watches' consumers (they start again, nodeGone): a room
// whose view is not whole yet, or whose slots could not be read or
// freed, is tried again every second for up to reclaimFor.
func (n *Node) reclaimSlotsOf(node string) {
	n.rs.mu.Lock()
	pending := make(map[string]*roomWatch, len(n.rs.watches))
	for name, w := range n.rs.watches {
		pending[name] = w
	}
	n.rs.mu.Unlock()
	deadline := time.Now().Add(reclaimFor)
	for len(pending) > 0 && time.Now().Before(deadline) {
		for name, w := range pending {
			select {
			case <-w.stop: // unfollowed: the room closed here
				delete(pending, name)
				continue
			default:
			}
			if _, _, ready := w.readyState(0, n.stop); !ready {
				continue
			}
			// The store, not the view: the view may not show the gone
			// node's last claim yet (its watch's consumer may have been
			// on that node and start again), and a room skipped because
			// its view showed nothing held kept the slot for good (CI,
			// under -race: TestDeadJoinSlotFreed).
			if n.reclaimRoomHolds(name, node) {
				delete(pending, name)
			}
		}
		if len(pending) == 0 {
			return
		}
		select {
		case <-time.After(time.Second):
		case <-n.stop:
			return
		}
	}
}

// reclaimFor bounds how long reclaimSlotsOf tries a room again.
const reclaimFor = time.Minute

// reclaimRoomHolds frees the slots and identities node holds without a
// member in a room; done is false when the store did not answer (try
// again). An identity held so blocks nobody (a join of it replaces the
// holder) but its key stayed for good.
func (n *Node) reclaimRoomHolds(name, node string) (done bool) {
	ctx, cancel := context.WithTimeout(context.Background(), kvTimeout)
	defer cancel()
	p := roomKey(name)
	held := map[string]slotState{} // by key: slots and identities
	ids := map[string]bool{}
	err := n.readKeys(ctx, []string{p + ".s.*", p + ".i.*", p + ".m.>"}, func(e jetstream.KeyValueEntry) {
		put := e.Operation() == jetstream.KeyValuePut
		if strings.HasPrefix(e.Key(), p+".m.") {
			var me memberEntry
			if put && json.Unmarshal(e.Value(), &me) == nil {
				ids[me.ID] = true
			}
			return
		}
		delete(held, e.Key())
		var h holder
		if put && json.Unmarshal(e.Value(), &h) == nil {
			held[e.Key()] = slotState{id: h.ID, node: h.Node, rev: e.Revision(), created: e.Created()}
		}
	})
	if err != nil {
		return false
	}
	done = true
	for key, e := range held {
		e.member = ids[e.id]
		if e.node != node || !n.slotAbandoned(e) {
			continue
		}
		_, err := n.kvDelete(ctx, key, e.rev)
		switch {
		case err == nil:
			n.log.Info("room state: freed what a gone node held without a member", "room", name, "key", key, "node", node)
		case !isConflict(err): // a conflict: taken or freed meanwhile
			done = false
		}
	}
	return done
}

// readSlots reads a room's slots and members as they are now.
func (n *Node) readSlots(ctx context.Context, name string) (map[int]slotState, error) {
	p := roomKey(name)
	slots := map[int]slotState{}
	ids := map[string]bool{}
	err := n.readKeys(ctx, []string{p + ".s.*", p + ".m.>"}, func(e jetstream.KeyValueEntry) {
		if rest, ok := strings.CutPrefix(e.Key(), p+".s."); ok {
			s, err := strconv.Atoi(rest)
			if err != nil {
				return
			}
			delete(slots, s)
			var h holder
			if e.Operation() == jetstream.KeyValuePut && json.Unmarshal(e.Value(), &h) == nil {
				slots[s] = slotState{id: h.ID, node: h.Node, rev: e.Revision(), created: e.Created()}
			}
			return
		}
		var me memberEntry
		if e.Operation() == jetstream.KeyValuePut && json.Unmarshal(e.Value(), &me) == nil {
			ids[me.ID] = true
		}
	})
	if err != nil {
		return nil, err
	}
	for s, e := range slots {
		e.member = ids[e.id]
		slots[s] = e
	}
	return slots, nil
}
