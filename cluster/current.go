package cluster

import (
	"context"
	"errors"
	"slices"
	"sync"
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
// defined but not used yet), hence the two steps. The room's keys are two
// subject filters (P and P.>, no one filter matches both), so one room
// costs two leader requests, sent at once; the room list reads every
// room's own key through one request and then asks one per room.

// catchUpWait bounds how long an exact read waits for a replica to reach
// the leader's newest change before it answers with what the replica has.
const catchUpWait = 3 * time.Second

// leaderWait bounds the leader's answer: a stream without a leader (an
// election) does not answer at all.
const leaderWait = 2 * time.Second

// leaderLastChange is the stream sequence of the newest change to the keys
// matching filters, as the stream's leader has it; 0 when there is none.
// The leader's get takes one subject (no batch, no multi_last: those are
// direct gets, which replicas answer), so one request per filter, sent at
// once: one round trip.
func (n *Node) leaderLastChange(ctx context.Context, filters []string) (uint64, error) {
	seqs := make([]uint64, len(filters))
	errs := make([]error, len(filters))
	var wg sync.WaitGroup
	for i, f := range filters {
		wg.Add(1)
		go func() {
			defer wg.Done()
			m, err := n.leaderGet(ctx, "$KV."+roomsBucket+"."+f)
			if m != nil {
				seqs[i] = m.Seq
			}
			errs[i] = err
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return 0, err
	}
	return slices.Max(seqs), nil
}

// ErrStoreUnavailable: the room state store did not answer within the
// store wait (a new stream leader being elected after a node died, or
// this node cut off from the bus) and this node has no view of the room
// of its own. The admin API answers 503 (try again), never 404: the room
// may well exist.
var ErrStoreUnavailable = errors.New("the cluster's room state store does not answer (a new leader is being elected after a node died, or this node is cut off from the bus): try again")

// getCurrent reads a room's state with every change the store had
// acknowledged when it was called (false when there is no such room).
func (n *Node) getCurrent(name string) (roomState, bool, error) {
	return n.currentState(name, nil)
}

// currentState is getCurrent. metaRev, when not nil, is the newest
// revision of the room's own key as the stream's leader had it when the
// caller asked (the room list reads every room's key at once): then only
// the newest change of the room's other keys is asked of the leader, one
// request instead of two, and the view is read through both.
//
// While the stream has no leader (an election after a node died) it waits
// for one, within the store wait; meanwhile a replica's view that has the
// room is the best there is and is answered, but a replica's view without
// it is not taken for "no room" (it may miss the keys then: the admin API
// of a node without a part of the room answered 404 for a room that
// exists). When the store did not answer in time, the room's watch on
// this node answers if there is one, else ErrStoreUnavailable.
func (n *Node) currentState(name string, metaRev *uint64) (st roomState, found bool, err error) {
	p := roomKey(name)
	filters := []string{p, p + ".>"}
	asked := filters
	if metaRev != nil {
		asked = filters[1:]
	}
	// Each try: the leader's answer, then a read of kvTimeout; all of them
	// within the store wait (and the leader's wait of the last one).
	ctx, cancel := context.WithTimeout(context.Background(), n.opts.StoreWait+leaderWait)
	defer cancel()
	err = n.retryCtx(ctx, leaderWait+kvTimeout, func(ctx context.Context) error {
		lctx, lcancel := context.WithTimeout(ctx, leaderWait)
		newest, err := n.leaderLastChange(lctx, asked)
		lcancel()
		if err != nil {
			n.log.Debug("room state: no leader answer, reading a replica", "room", name, "err", err)
			if v, rerr := n.readViewCtx(ctx, name); rerr == nil && v.meta != nil {
				st, found = v.state()
				return nil
			}
			return err
		}
		if metaRev != nil {
			newest = max(newest, *metaRev)
		}
		if w := n.rs.watch(name); w != nil {
			if s, ok, caught := w.stateThrough(newest, catchUpWait, n.stop); caught {
				st, found = s, ok
				return nil
			}
		}
		v := newRoomView()
		if err := n.readKeysThrough(ctx, filters, newest, catchUpWait, func(e jetstream.KeyValueEntry) { v.apply(p, e) }); err != nil {
			return err
		}
		if v.lastRev < newest {
			n.log.Warn("room state: replica still behind the leader after the wait", "room", name, "have", v.lastRev, "leader", newest)
			if v.meta == nil {
				return errRetry // "no room" from a replica that lags is no answer: read again
			}
		}
		st, found = v.state()
		return nil
	})
	if err == nil {
		return st, found, nil
	}
	if w := n.rs.watch(name); w != nil {
		if s, ok, ready := w.state(); ready {
			n.log.Debug("room state: the store does not answer, answering from this node's watch", "room", name, "err", err)
			return s, ok, nil
		}
	}
	n.log.Warn("room state: the store does not answer", "room", name, "err", err)
	return roomState{}, false, ErrStoreUnavailable
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
