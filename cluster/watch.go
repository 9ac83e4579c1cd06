package cluster

import (
	"context"
	"encoding/json"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/starling-rtc/starling/protocol"
	"github.com/starling-rtc/starling/room"
)

// Anti-entropy by watching: each node follows the room state of the rooms
// it has a part of with a JetStream key-value watch (an ordered consumer
// on the room's key), and compares every new state with what it knows
// (reconcile, rooms.go). Nothing is read while nothing changes, where a
// read per room and node every second used to cost the store's stream
// leader 10,000 reads/s at 100 nodes (docs/cluster.md "What 100 nodes
// ... would cost the bus").
//
// A watch can miss changes while it is broken: the node's bus connection
// dropped (NATS unreachable), or the node hosting its consumer died. So
// every watch of this node starts again — its first values are the whole
// current state — when the connection comes back and when a node is gone.
// A difference seen by a watch is acted on only when it is still there a
// second later (confirmAfter): a member's event and its state change take
// different paths (core NATS and the stream), so one is often seen a few
// milliseconds before the other. A slow read of every room (safetyEvery)
// stays as a net for what the watch itself cannot report (a consumer that
// stalls without the client noticing until its heartbeats are missed).

// confirmAfter is how long a difference between the room state and the
// local room must last before it is repaired.
const confirmAfter = time.Second

// safetyEvery is the period of the full read of every local room's state.
const safetyEvery = 30 // heartbeat periods

// roomWatch is one room's watch and its reconcile bookkeeping.
type roomWatch struct {
	stop    chan struct{}
	restart chan struct{} // buffered: start the watch again (resync)

	mu sync.Mutex // one reconcile pass at a time
	// When each difference was first seen, by member id: a remote member
	// in the state but not known here, a known remote participant not in
	// the state, a local participant not in the state.
	unknown, absent, ownMissing map[string]time.Time
	recheck                     bool // a confirming read is scheduled
}

func newRoomWatch() *roomWatch {
	return &roomWatch{
		stop: make(chan struct{}), restart: make(chan struct{}, 1),
		unknown: map[string]time.Time{}, absent: map[string]time.Time{}, ownMissing: map[string]time.Time{},
	}
}

// resyncAll starts every watch again: their first values are the current
// state, so whatever they missed while broken is seen.
func (s *roomSubs) resyncAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, w := range s.watches {
		select {
		case w.restart <- struct{}{}:
		default:
		}
	}
}

func (s *roomSubs) watch(name string) *roomWatch {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.watches[name]
}

// watchRoom runs a room's watch until the room is unfollowed or the node
// stops, opening it again whenever it ends or must resync.
func (n *Node) watchRoom(name string, w *roomWatch) {
	defer n.wg.Done()
	backoff := 250 * time.Millisecond
	for {
		// The watch lives as long as its context (nats.go unsubscribes when
		// it ends): bound only its creation.
		ctx, cancel := context.WithCancel(context.Background())
		slow := time.AfterFunc(kvTimeout, cancel)
		// The node's Close or the room's unfollow ends a creation the
		// store is slow to answer (it has no quorum once the other nodes
		// stopped) instead of waiting out kvTimeout.
		created := make(chan struct{})
		go func() {
			select {
			case <-n.stop:
			case <-w.stop:
			case <-created:
				return
			}
			cancel()
		}()
		kw, err := n.bus.kv.Watch(ctx, roomKey(name))
		close(created)
		if slow.Stop() && err == nil {
			backoff = 250 * time.Millisecond
			n.consumeWatch(name, w, kw)
			// Ending the context ends the subscription and deletes the
			// watch's consumer in nats.go's own goroutine. Not kw.Stop(),
			// which waits for the store's answer: up to 5 s when it has no
			// quorum any more (the last nodes of a cluster stopping), and
			// the node's Close waits for this loop.
			cancel()
		} else {
			cancel()
			backoff = min(2*backoff, 4*time.Second) // the store is electing a leader, or the bus is away
		}
		select {
		case <-w.stop:
			return
		case <-n.stop:
			return
		case <-time.After(backoff):
		}
	}
}

// consumeWatch applies a watch's values until it ends, must resync, or the
// room is unfollowed.
func (n *Node) consumeWatch(name string, w *roomWatch, kw jetstream.KeyWatcher) {
	for {
		var e jetstream.KeyValueEntry
		select {
		case <-w.stop:
			return
		case <-n.stop:
			return
		case <-w.restart:
			return
		case got, ok := <-kw.Updates():
			if !ok {
				return // the watch ended (its consumer could not be recreated)
			}
			if got == nil {
				continue // the initial values are all in
			}
			e = got
		}
		// Only the newest value counts: skip those already overtaken.
	drain:
		for {
			select {
			case got, ok := <-kw.Updates():
				if !ok {
					break drain
				}
				if got != nil {
					e = got
				}
			default:
				break drain
			}
		}
		var st roomState
		exists := e.Operation() == jetstream.KeyValuePut && json.Unmarshal(e.Value(), &st) == nil
		if r := n.rooms.Room(name); r != nil && exists {
			n.reconcileState(r, w, st, false)
		}
	}
}

// reconcileState compares a room's state with the local room: a remote
// member not known here makes this node ask its node for a snapshot (at
// once when now is set: the room just opened here); a known remote
// participant missing from the state is removed, and a local one missing
// is written back (reassert, failover.go), once the difference has lasted
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
	for _, m := range st.Members {
		inState[m.ID] = true
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
		if !inState[id] && due(w.absent, absent, id) {
			gone = append(gone, id)
		}
	}
	var missing []room.Member
	for _, m := range r.LocalMembers() {
		if !inState[m.ID] && due(w.ownMissing, ownMissing, m.ID) {
			missing = append(missing, m)
		}
	}
	w.unknown, w.absent, w.ownMissing = unknown, absent, ownMissing
	if len(unknown)+len(absent)+len(ownMissing) > 0 && !w.recheck {
		w.recheck = true
		n.wg.Add(1)
		go func() {
			defer n.wg.Done()
			select {
			case <-time.After(confirmAfter + 100*time.Millisecond):
			case <-n.stop:
				return
			}
			w.mu.Lock()
			w.recheck = false
			w.mu.Unlock()
			if cur := n.rooms.Room(r.Name()); cur == r {
				n.reconcile(r, false)
			}
		}()
	}
	n.reassert(r, missing) // failover.go
	for node := range ask {
		n.requestSnapshot(r, node)
	}
	for _, id := range gone {
		r.RemoveRemote(id, protocol.ReasonDisconnected)
	}
}
