package cluster

import (
	"context"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Exact reads for the admin API. n.get answers from this node's replica
// of the room state stream: the room's watch (an ordered consumer, which
// the server places on any replica) or a one-shot read through another
// such consumer. A replica may be a few writes behind the stream's leader,
// so a node without a part of a room listed one participant of two just
// after both had seen each other (CI on 245c8a7). What an operator asks
// for must include every write acknowledged before the request: the
// leader is asked for the newest change of the room's keys (one small
// get, never a direct one, which the nearest replica answers), and the
// view is read once it includes that change. nats-server 2.15 has no
// direct get that waits for a sequence (its "min last sequence" error is
// defined but not used yet), hence the two steps.

// catchUpWait bounds how long an exact read waits for a replica to reach
// the leader's newest change before it answers with what the replica has.
const catchUpWait = 3 * time.Second

// leaderWait bounds the leader's answer: a stream without a leader (an
// election) does not answer at all.
const leaderWait = 2 * time.Second

// leaderLastChange is the stream sequence of the newest change to the keys
// matching filters, as the stream's leader has it; 0 when there is none.
func (n *Node) leaderLastChange(ctx context.Context, filters []string) (uint64, error) {
	var last uint64
	for _, f := range filters {
		m, err := n.leaderGet(ctx, "$KV."+roomsBucket+"."+f)
		if err != nil {
			return 0, err
		}
		if m != nil {
			last = max(last, m.Seq)
		}
	}
	return last, nil
}

// getCurrent reads a room's state with every change the store had
// acknowledged when it was called (false when there is no such room). It
// falls back to get's replica read when the stream has no leader (an
// election after a node died): the replica's view is the best there is.
func (n *Node) getCurrent(name string) (roomState, bool) {
	ctx, cancel := context.WithTimeout(context.Background(), kvTimeout)
	defer cancel()
	p := roomKey(name)
	filters := []string{p, p + ".>"}
	lctx, lcancel := context.WithTimeout(ctx, leaderWait)
	newest, err := n.leaderLastChange(lctx, filters)
	lcancel()
	if err != nil {
		n.log.Debug("room state: no leader answer, reading a replica", "room", name, "err", err)
		return n.get(name)
	}
	if w := n.rs.watch(name); w != nil {
		if st, ok, caught := w.stateThrough(newest, catchUpWait, n.stop); caught {
			return st, ok
		}
	}
	v := newRoomView()
	if err := n.readKeysThrough(ctx, filters, newest, catchUpWait, func(e jetstream.KeyValueEntry) { v.apply(p, e) }); err != nil {
		return roomState{}, false
	}
	if v.lastRev < newest {
		n.log.Warn("room state: replica still behind the leader after the wait", "room", name, "have", v.lastRev, "leader", newest)
	}
	return v.state()
}

// stateThrough waits (up to timeout) for the watch's view to include the
// change at stream sequence seq and returns the state; caught is false
// when it did not in time.
func (w *roomWatch) stateThrough(seq uint64, timeout time.Duration, stop <-chan struct{}) (st roomState, ok, caught bool) {
	deadline := time.After(timeout)
	for {
		w.vmu.Lock()
		if w.ready && w.view.lastRev >= seq {
			st, ok = w.view.state()
			w.vmu.Unlock()
			return st, ok, true
		}
		ch := w.changed
		w.vmu.Unlock()
		select {
		case <-ch:
		case <-w.stop:
			return roomState{}, false, false
		case <-stop:
			return roomState{}, false, false
		case <-deadline:
			return roomState{}, false, false
		}
	}
}
