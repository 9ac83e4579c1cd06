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
// random order (joins on several nodes at once rarely pick the same);
// errFull when every slot is held.
func (n *Node) claimSlot(ctx context.Context, name string, m room.Member, maxP int) (int, error) {
	p := roomKey(name)
	val, _ := json.Marshal(holder{ID: m.ID, Node: m.Node})
	taken := map[int]string{}
	w := n.rs.watch(name)
	if w != nil {
		taken = w.slotsTaken()
	}
	for s, id := range taken {
		if id == m.ID {
			return s, nil // an earlier try of this join got it
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
			_, err := n.bus.kv.Create(ctx, slotKey(p, s), val)
			if err == nil {
				return s, nil
			}
			if !isConflict(err) {
				return -1, err
			}
			taken[s] = "?"
			// A conflict costs a round trip: skip what the watch has seen
			// taken since (the other joins of a storm), not only this one.
			if w != nil {
				for s, id := range w.slotsTaken() {
					if id == m.ID {
						return s, nil
					}
					taken[s] = id
				}
			}
		}
		if authoritative && len(free) == 0 {
			return -1, errFull
		}
		// What this node knew is used up: read the slots as they are, and
		// take back those held by no member for a while.
		slots, err := n.sharedReadSlots(ctx, name)
		if err != nil {
			return -1, err
		}
		taken = map[int]string{}
		for s, e := range slots {
			if e.id == m.ID {
				return s, nil
			}
			if !e.member && time.Since(e.created) > staleSlot {
				if _, err := n.kvDelete(ctx, slotKey(p, s), e.rev); err == nil {
					n.log.Info("room state: took back a slot held by no member", "room", name, "slot", s)
					continue
				}
			}
			taken[s] = e.id
		}
		authoritative = true
	}
	return -1, errors.New("room state: too much contention on the room's slots")
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
