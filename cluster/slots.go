package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/starling-rtc/starling/protocol"
	"github.com/starling-rtc/starling/room"
)

// A room's slots (rooms with a participant limit): claiming one, reading
// them all, and confirming one once the member key is written.
//
// A join claims a slot, then writes its member key. A slot held by no
// member key for staleSlot is taken back by the next join that finds the
// room full (claimSlot): its node died between the two writes. A live
// join that took that long (a stalled process, a store electing a leader
// under load) lost its slot without knowing, wrote its member key all the
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
// with a participant limit only.

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
			if !e.member && time.Since(e.created) > n.staleSlotAge() {
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
	rev     uint64
	created time.Time
	member  bool // the holder has a member key
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
				slots[s] = slotState{id: h.ID, rev: e.Revision(), created: e.Created()}
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

// slotHooks are test hooks (export_test.go): a stall of a join between its
// slot and its member key, and a shorter staleSlot.
type slotHooks struct {
	stall atomic.Pointer[func()]
	stale atomic.Int64 // ns; 0: staleSlot
}

// stallBeforeMember runs the stall hook, if any.
func (n *Node) stallBeforeMember() {
	if f := n.slotHooks.stall.Load(); f != nil {
		(*f)()
	}
}

// staleSlotAge is how old a slot held by no member must be to be taken back.
func (n *Node) staleSlotAge() time.Duration {
	if d := n.slotHooks.stale.Load(); d > 0 {
		return time.Duration(d)
	}
	return staleSlot
}
