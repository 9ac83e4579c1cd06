package cluster

import (
	"context"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/starling-rtc/starling/protocol"
)

// Anti-entropy by watching: each node follows the room state of the rooms
// it has a part of with a JetStream key-value watch (an ordered consumer
// on the room's keys, keys.go), keeps the room's view from it, and
// compares every new state with what it knows (reconcileState). Nothing is read while nothing changes, where a
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
// stalls without the client noticing until its heartbeats are missed, or
// whose recreation failed quietly): every safetyEvery (with a random
// offset) a watch asks the store for the newest change of the room's keys
// (one small direct read of the stream's last message on the room's
// subjects) and starts again if that change has not reached it a second
// later. A full read of the room's keys happens only then. Each check also
// compares the local room with the view once more, which needs no read.

// confirmAfter is how long a difference between the room state and the
// local room must last before it is repaired.
const confirmAfter = time.Second

// safetyEvery is the period of a watch's check that it has missed nothing.
const safetyEvery = time.Minute

// roomWatch is one room's watch and its reconcile bookkeeping.
type roomWatch struct {
	stop    chan struct{}
	restart chan struct{} // buffered: start the watch again (resync)
	refs    int           // holders: the room's follower, leaves waiting for the view (roomSubs.mu)

	vmu     sync.Mutex
	view    *roomView     // the room's keys as the watch delivered them
	ready   bool          // the watch's initial values are all in the view
	changed chan struct{} // closed and replaced whenever the view changes

	mu sync.Mutex // one reconcile pass at a time
	// When each difference was first seen, by member id: a remote member
	// in the state but not known here, a known remote participant not in
	// the state, a local participant not in the state.
	unknown, absent, ownMissing map[string]time.Time
	// A local participant whose identity another member of the state
	// holds (replaced by a join that did not find its key to delete).
	replaced map[string]time.Time
	// A local participant whose resume token hash in the state is not its
	// current one (recorded while the bus was away).
	staleToken map[string]time.Time
	recheck    bool // a confirming read is scheduled
}

func newRoomWatch() *roomWatch {
	return &roomWatch{
		stop: make(chan struct{}), restart: make(chan struct{}, 1),
		view: newRoomView(), changed: make(chan struct{}),
		unknown: map[string]time.Time{}, absent: map[string]time.Time{}, ownMissing: map[string]time.Time{},
		replaced: map[string]time.Time{}, staleToken: map[string]time.Time{},
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

// hold returns the room's watch, starting it if none runs; it runs until
// every hold is released.
func (s *roomSubs) hold(n *Node, name string) *roomWatch {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.holdLocked(n, name)
}

func (s *roomSubs) holdLocked(n *Node, name string) *roomWatch {
	w := s.watches[name]
	if w == nil {
		w = newRoomWatch()
		s.watches[name] = w
		// Refused once the node closes: whoever waits on the watch
		// waits on n.stop too, and closeAll ends its hold.
		n.spawn(func() { n.watchRoom(name, w) })
	}
	w.refs++
	return w
}

// release ends a hold (s.mu not held by the caller).
func (s *roomSubs) release(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.releaseLocked(name)
}

func (s *roomSubs) releaseLocked(name string) {
	w := s.watches[name]
	if w == nil {
		return
	}
	if w.refs--; w.refs <= 0 {
		close(w.stop)
		delete(s.watches, name)
	}
}

// state is the room's state as watched; ready is false until the watch's
// first values are in.
func (w *roomWatch) state() (st roomState, ok, ready bool) {
	w.vmu.Lock()
	defer w.vmu.Unlock()
	if !w.ready {
		return roomState{}, false, false
	}
	st, ok = w.view.state()
	return st, ok, true
}

// readyState waits (up to timeout) for the watch's first values and
// returns the state; ready is false if they did not come in time.
func (w *roomWatch) readyState(timeout time.Duration, stop <-chan struct{}) (st roomState, ok, ready bool) {
	return w.stateThrough(0, timeout, stop) // every view is through revision 0
}

// copyView is a copy of the view; false until the watch's first values
// are in.
func (w *roomWatch) copyView() (*roomView, bool) {
	w.vmu.Lock()
	defer w.vmu.Unlock()
	if !w.ready {
		return nil, false
	}
	v := *w.view
	v.members = make(map[string]memberEntry, len(w.view.members))
	for k, m := range w.view.members {
		v.members[k] = m
	}
	v.slots = make(map[int]string, len(w.view.slots))
	for k, s := range w.view.slots {
		v.slots[k] = s
	}
	v.holders = make(map[string]string, len(w.view.holders))
	for k, id := range w.view.holders {
		v.holders[k] = id
	}
	if w.view.meta != nil {
		meta := *w.view.meta
		v.meta = &meta
	}
	return &v, true
}

// slotsTaken is a copy of the slots held, as watched.
func (w *roomWatch) slotsTaken() map[int]string {
	w.vmu.Lock()
	defer w.vmu.Unlock()
	out := make(map[int]string, len(w.view.slots))
	for s, id := range w.view.slots {
		out[s] = id
	}
	return out
}

// emptyAfter waits (up to timeout) for the view to include the write at
// stream sequence seq and reports whether the room then has no member;
// known is false when the view did not catch up in time.
func (w *roomWatch) emptyAfter(seq uint64, timeout time.Duration, stop <-chan struct{}) (empty, known bool) {
	deadline := time.After(timeout)
	for {
		w.vmu.Lock()
		if w.ready && w.view.lastRev >= seq {
			empty = len(w.view.members) == 0
			w.vmu.Unlock()
			return empty, true
		}
		ch := w.changed
		w.vmu.Unlock()
		select {
		case <-ch:
		case <-w.stop:
			return false, false
		case <-stop:
			return false, false
		case <-deadline:
			return false, false
		}
	}
}

// update changes the view under its lock and wakes emptyAfter.
func (w *roomWatch) update(f func(v *roomView)) {
	w.vmu.Lock()
	f(w.view)
	close(w.changed)
	w.changed = make(chan struct{})
	w.vmu.Unlock()
}

// watchRoom runs a room's watch until the room is unfollowed or the node
// stops, opening it again whenever it ends or must resync.
func (n *Node) watchRoom(name string, w *roomWatch) {
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
		p := roomKey(name)
		kw, err := n.bus.kv.WatchFiltered(ctx, []string{p, p + ".>"})
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
// room is unfollowed. The watch's first values replace the view: they are
// the room's whole state.
func (n *Node) consumeWatch(name string, w *roomWatch, kw jetstream.KeyWatcher) {
	p := roomKey(name)
	w.update(func(v *roomView) { *v = *newRoomView() })
	w.vmu.Lock()
	w.ready = false
	w.vmu.Unlock()
	n.log.Debug("room state watch started", "room", name)
	defer n.log.Debug("room state watch ended", "room", name)
	check := time.NewTimer(safetyEvery/2 + rand.N(safetyEvery))
	defer check.Stop()
	var behind uint64 // a change the last check found the view lacked
	for {
		select {
		case <-w.stop:
			return
		case <-n.stop:
			return
		case <-w.restart:
			return
		case <-check.C:
			w.vmu.Lock()
			last := w.view.lastRev
			w.vmu.Unlock()
			if behind != 0 && last < behind {
				n.log.Info("room state watch missed changes: reading the room again", "room", name)
				return
			}
			behind = 0
			if seq := n.lastChange(p); seq > last {
				behind = seq // in flight, or missed: look again in a second
				check.Reset(confirmAfter)
			} else {
				check.Reset(safetyEvery/2 + rand.N(safetyEvery))
			}
			// And compare the room with the view again (no read): the
			// local room may have changed on its own (a stub whose resume
			// window ended) with no change of the state to show it.
		case e, ok := <-kw.Updates():
			if !ok {
				return // the watch ended (its consumer could not be recreated)
			}
			w.applyEntry(p, e)
		}
		// Apply what else is there before comparing: a storm's changes
		// are compared once.
	drain:
		for {
			select {
			case e, ok := <-kw.Updates():
				if !ok {
					return
				}
				w.applyEntry(p, e)
			default:
				break drain
			}
		}
		st, exists, ready := w.state()
		if r := n.rooms.Room(name); r != nil && exists && ready {
			if st.Closed && st.SID == r.SID() {
				// Deleted by the admin, and this part missed the command
				// to close (closeroom.go).
				n.spawn(func() { n.closeHeld(); r.Close(protocol.ReasonRoomClosed) })
				continue
			}
			n.reconcileState(r, w, st, false)
		}
	}
}

// lastChange is the stream sequence of the newest change to the room's
// keys (p and p.>), 0 when unknown.
func (n *Node) lastChange(p string) uint64 {
	ctx, cancel := context.WithTimeout(context.Background(), kvTimeout)
	defer cancel()
	return n.lastChangeCtx(ctx, p)
}

func (n *Node) lastChangeCtx(ctx context.Context, p string) uint64 {
	return n.lastChangeOf(ctx, []string{p, p + ".>"})
}

// lastChangeOf is the stream sequence of the newest change to the keys
// matching filters, 0 when unknown.
// A direct read (the nearest replica answers): it also answers while the
// stream has no leader (a takeover reads the room then), and a replica a
// few writes behind only makes a read's check of its watch less strict.
func (n *Node) lastChangeOf(ctx context.Context, filters []string) uint64 {
	s, err := n.bus.stream(ctx)
	if err != nil {
		return 0
	}
	var last uint64
	for _, f := range filters {
		if m, err := s.GetLastMsgForSubject(ctx, "$KV."+roomsBucket+"."+f); err == nil {
			last = max(last, m.Sequence)
		}
	}
	return last
}

// applyEntry applies one watched entry; nil marks the initial values' end.
func (w *roomWatch) applyEntry(p string, e jetstream.KeyValueEntry) {
	w.update(func(v *roomView) {
		if e == nil {
			w.ready = true
			return
		}
		v.apply(p, e)
	})
}
