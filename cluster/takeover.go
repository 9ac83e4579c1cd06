package cluster

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/starling-rtc/starling/protocol"
	"github.com/starling-rtc/starling/room"
)

// SetToken implements room.Bus: a participant's resume token changed (it
// works once), so the member's key keeps the new one's hash.
func (n *Node) SetToken(name, participantID, tokenHash string) {
	n.spawn(func() {
		key := memberKey(roomKey(name), n.id, participantID)
		err := n.retry(func(ctx context.Context) error {
			var e memberEntry
			rev, err := n.getJSON(ctx, key, &e)
			if err != nil || rev == 0 || e.Token == tokenHash {
				return err
			}
			e.Token = tokenHash
			data, _ := json.Marshal(e)
			if _, err := n.bus.kv.Update(ctx, key, data, rev); isConflict(err) {
				return errRetry
			} else {
				return err
			}
		})
		if err != nil {
			n.tokenFailures.Add(1)
			n.log.Warn("resume token not recorded in the cluster", "room", name, "participant", participantID, "err", err)
		}
	})
}

// StoreMember implements room.Bus: what the participant's member key
// keeps of it for a takeover (name, metadata, withdrawn client track ids:
// room/withdrawn.go) is written, read from current at each try, so that
// writes made at once converge on the latest.
func (n *Node) StoreMember(name, participantID string, current func() room.Member) {
	n.spawn(func() {
		key := memberKey(roomKey(name), n.id, participantID)
		err := n.retry(func(ctx context.Context) error {
			var e memberEntry
			rev, err := n.getJSON(ctx, key, &e)
			if err != nil || rev == 0 {
				return err // none: left, or moved (the move wrote it)
			}
			now := current()
			if e.Name == now.Name && e.Metadata == now.Metadata && slices.Equal(e.Withdrawn, now.Withdrawn) {
				return nil
			}
			e.Name, e.Metadata, e.Withdrawn = now.Name, now.Metadata, now.Withdrawn
			data, _ := json.Marshal(e)
			if _, err := n.bus.kv.Update(ctx, key, data, rev); isConflict(err) {
				return errRetry
			} else {
				return err
			}
		})
		if err != nil {
			n.log.Warn("participant's name, metadata or unpublished tracks not recorded in the cluster", "room", name, "participant", participantID, "err", err)
		}
	})
}

// errNotHere: no member to take over (the session is unknown: 404).
var errNotHere = room.ErrNoMember

// takeoverWait bounds how long a takeover waits for the state store.
const takeoverWait = 8 * time.Second

// takeoverOp bounds one store operation of a takeover. A request lost on
// its way (to a replica that just died) would otherwise take kvTimeout
// (5 s) of the takeover's 8 s before the next try.
const takeoverOp = 2 * time.Second

// Takeover implements room.Bus: the member holding the token hash moves to
// this node, if its node is gone (it does not answer a ping over the bus)
// or releases it (handoff). The move deletes the member's key at the
// revision read (so only one node can take it over) and writes it again
// under this node with the new token's hash, so a retried move that had
// landed is recognised as this node's own, and the member never goes
// without a valid token. Store errors are returned as they are: the caller
// answers 503, since the store comes back (a new stream leader) and the
// client tries again.
// The whole takeover is over within ctx and takeoverWait: its steps share
// one deadline, since a client waits for its answer only so long.
func (n *Node) Takeover(ctx context.Context, name, tokenHash, newTokenHash string) (room.Member, string, error) {
	ctx, cancel := context.WithTimeout(ctx, takeoverWait)
	defer cancel()
	start := time.Now()
	var tRead, tPing, tHandoff, tMove time.Duration
	defer func() {
		n.log.Debug("takeover attempt", "room", name, "read", tRead, "ping", tPing, "handoff", tHandoff,
			"move", tMove, "total", time.Since(start))
	}()
	// The dead node may have led the state store's stream: while the others
	// elect a new leader (a few seconds) reads fail, so keep trying.
	var v *roomView
	for {
		var err error
		rctx, rcancel := context.WithTimeout(ctx, takeoverOp)
		v, err = n.readViewCtx(rctx, name)
		rcancel()
		if err == nil {
			break
		}
		// A fresh read is a watch, whose consumer only the cluster's meta
		// leader creates: after a node died that may take a while. This
		// node's own watch of the room, if it has one, is as good here:
		// the move below checks the member's key again at the leader.
		if w := n.rs.watch(name); w != nil {
			if wv, ok := w.copyView(); ok {
				v = wv
				break
			}
		}
		select {
		case <-time.After(200 * time.Millisecond):
			continue
		case <-ctx.Done():
		}
		tRead = time.Since(start)
		return room.Member{}, "", fmt.Errorf("room state: %w", err)
	}
	tRead = time.Since(start)
	if v.meta == nil || v.meta.Closed { // no room, or deleted by the admin: nothing to resume
		return room.Member{}, "", errNotHere
	}
	var m memberEntry
	landed := false
	for _, o := range v.members {
		switch {
		case o.Token == "":
		case subtle.ConstantTimeCompare([]byte(o.Token), []byte(tokenHash)) == 1:
			m = o
		case o.Node == n.id && subtle.ConstantTimeCompare([]byte(o.Token), []byte(newTokenHash)) == 1:
			// An earlier attempt through this node moved it, but its write
			// was not confirmed (a store timeout past the deadline: 503):
			// the member no longer holds the token presented, and looking
			// for that alone answered 404 and ended the client's session.
			m, landed = o, true
		}
	}
	if landed {
		n.rs.follow(n, name) // idempotent: that attempt subscribed already
		n.moves.done(tokenHash)
		return m.Member, v.meta.SID, nil
	}
	// deleteSent: a delete of the member's old key went out and was not
	// refused, so it may have landed though its answer was lost.
	var deleteSent bool
	if m.ID == "" {
		// An earlier attempt through this node deleted the old key and
		// ran out of time before its write (503): the member is in the
		// state under no key, and this attempt makes the write.
		m, deleteSent = n.moves.sent(tokenHash)
	}
	if m.ID == "" || m.Node == n.id {
		return room.Member{}, "", errNotHere
	}
	t0 := time.Now()
	answers := !deleteSent && n.nodeAnswers(m.Node) // a member deleted already was released already
	tPing = time.Since(t0)
	if answers {
		// Alive, or dying and not yet noticed: it must let go first.
		t0 = time.Now()
		var h room.ReleaseResult
		var handed room.HandedOver
		h, handed = n.handoff(ctx, m.Node, name, m.ID, tokenHash) // failover.go
		m.Released, m.Withdrawn = handed.Tracks, handed.Withdrawn
		tHandoff = time.Since(t0)
		switch h {
		case room.NotReleased:
			return room.Member{}, "", errNotHere
		case room.StillHeld:
			return room.Member{}, "", fmt.Errorf("node %s: %w", m.Node, room.ErrStillHeld)
		}
	}
	t0 = time.Now()
	defer func() { tMove = time.Since(t0) }()
	n.rs.follow(n, name)
	n.announceMove(name, m.ID) // the others keep its stub while it is under no key (moving.go)
	p := roomKey(name)
	from, to := memberKey(p, m.Node, m.ID), memberKey(p, n.id, m.ID)
	moved := m
	moved.Node, moved.Token = n.id, newTokenHash
	data, _ := json.Marshal(moved)
	var lost bool
	err := n.retryCtx(ctx, takeoverOp, func(ctx context.Context) error {
		var cur memberEntry
		rev, err := n.getJSON(ctx, from, &cur)
		if err != nil {
			return err
		}
		if rev != 0 {
			if cur.Token != tokenHash {
				lost = true // taken over meanwhile, through another node
				return nil
			}
			_, err := n.kvDelete(ctx, from, rev)
			if isConflict(err) {
				return errRetry
			}
			deleteSent = true
			n.moves.add(tokenHash, m)
			if err != nil {
				return err
			}
		} else {
			// Gone: moved by an earlier try of this takeover (its key
			// here tells), or by another node's.
			var mine memberEntry
			if r, err := n.getJSON(ctx, to, &mine); err != nil {
				return err
			} else if r != 0 && mine.Token == newTokenHash {
				return nil
			}
			if !deleteSent {
				lost = true
				return nil
			}
			// This takeover's delete landed but its write did not (the
			// store's leader died between the two, as when the node the
			// participant leaves led it): unless another node's
			// takeover holds the member now, the write is still ours to
			// make. Answering 404 here lost the member for good.
			elsewhere, err := n.listKeys(func(f func(context.Context) error) error { return f(ctx) },
				p+".m.*."+enc(m.ID))
			if err != nil {
				return err
			}
			if len(elsewhere) > 0 {
				lost = true
				return nil
			}
		}
		if n.loseMoveWrite.CompareAndSwap(true, false) {
			return errors.New("test: the move's write is lost") // as when the store's leader dies here
		}
		if n.endMoveAtDelete.CompareAndSwap(true, false) {
			// As when the store's leader dies here and the takeover's
			// deadline passes before a new one is elected (a protocol
			// error ends retryCtx at once).
			return protocol.Errorf(protocol.CodeUnavailable, "test: the takeover ran out of time after its delete")
		}
		_, err = n.bus.kv.Put(ctx, to, data)
		return err
	})
	if err != nil {
		return room.Member{}, "", err // the move is remembered if its delete went out
	}
	n.moves.done(tokenHash)
	if lost {
		return room.Member{}, "", errNotHere
	}
	if m.Identity != "" { // the identity's holder names the member's node (duplicates are ended there)
		key := identityKey(p, m.Identity)
		_ = n.retry(func(ctx context.Context) error {
			var h holder
			rev, err := n.getJSON(ctx, key, &h)
			if err != nil || rev == 0 || h.ID != m.ID {
				return err
			}
			val, _ := json.Marshal(holder{ID: m.ID, Node: n.id})
			if _, err := n.bus.kv.Update(ctx, key, val, rev); isConflict(err) {
				return errRetry
			} else {
				return err
			}
		})
	}
	sid, _ := n.RoomSID(name)
	if sid == "" {
		sid = v.meta.SID
	}
	return m.Member, sid, nil
}

// nodeAnswers pings a node over the bus. A node whose bus connection is
// gone has no subscriber there any more (no responders): gone. One that
// does not answer in time is slow or dead without a word (a host that lost
// its network): its heartbeats decide, since taking over the participant
// of a node that is only slow (a loaded machine) would leave it on that
// node too, never released (a drain then waited for it in vain).
func (n *Node) nodeAnswers(node string) bool {
	_, err := n.bus.nc.Request(nodeSubject(node, "ping"), nil, 700*time.Millisecond)
	switch {
	case err == nil:
		return true
	case errors.Is(err, nats.ErrNoResponders):
		return false
	case errors.Is(err, nats.ErrTimeout):
		return n.reg.alive(node)
	}
	return true
}

// pendingMoves remembers, by the hash of the token presented, the takeovers
// through this node whose delete of the member's old key went out but whose
// write under this node was not confirmed: the takeover ran out of time
// between the two (the store's leader died there; a loaded machine) and
// answered 503. The client tries again, and that attempt found the member
// under no key and answered 404: the participant was lost for good
// (TestTakeoverWriteLostAfterDelete, once at load 27).
type pendingMoves struct {
	mu sync.Mutex
	m  map[string]pendingMove
}

type pendingMove struct {
	m  memberEntry
	at time.Time
}

// pendingMoveTTL: a client resumes within its resume window (a minute by
// default); an entry older than that is of no use.
const pendingMoveTTL = 10 * time.Minute

func (p *pendingMoves) add(tokenHash string, m memberEntry) {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := time.Now()
	for k, e := range p.m {
		if now.Sub(e.at) > pendingMoveTTL {
			delete(p.m, k)
		}
	}
	if p.m == nil {
		p.m = map[string]pendingMove{}
	}
	p.m[tokenHash] = pendingMove{m: m, at: now}
}

// sent returns the member of a move whose delete went out, if any.
func (p *pendingMoves) sent(tokenHash string) (memberEntry, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	e, ok := p.m[tokenHash]
	if !ok || time.Since(e.at) > pendingMoveTTL {
		return memberEntry{}, false
	}
	return e.m, true
}

func (p *pendingMoves) done(tokenHash string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.m, tokenHash)
}
