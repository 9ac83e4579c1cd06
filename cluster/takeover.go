package cluster

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/starling-rtc/starling/room"
)

// SetToken implements room.Bus: a participant's resume token changed (it
// works once), so the member entry keeps the new one's hash.
func (n *Node) SetToken(name, participantID, tokenHash string) {
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		_, err := n.update(name, func(st *roomState, exists bool) error {
			for i := range st.Members {
				if st.Members[i].ID == participantID {
					if st.Members[i].Token == tokenHash {
						return errNoChange
					}
					st.Members[i].Token = tokenHash
					return nil
				}
			}
			return errNoChange
		})
		if err != nil {
			n.log.Warn("resume token not recorded in the cluster", "room", name, "participant", participantID, "err", err)
		}
	}()
}

// errNotHere: no member to take over (the session is unknown: 404).
var errNotHere = room.ErrNoMember

// takeoverWait bounds how long a takeover waits for the state store, all
// steps together (the caller's context may end it sooner).
const takeoverWait = 8 * time.Second

// takeoverOp bounds one store operation of a takeover. A request lost on
// its way (to a replica that just died) would otherwise take kvTimeout
// (5 s) of the takeover's 8 s before the next try.
const takeoverOp = 2 * time.Second

// Takeover implements room.Bus: the member holding the token hash moves to
// this node, if its node is gone (it does not answer a ping over the bus)
// or releases it (handoff). The move writes the new token's hash in the
// same compare-and-set, so a retried write that had landed is recognised
// as this node's own, and the member never goes without a valid token.
// Store errors are returned as they are: the caller answers 503, since
// the store comes back (a new stream leader) and the client tries again.
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
	var st roomState
	for {
		var err error
		rctx, rcancel := context.WithTimeout(ctx, takeoverOp)
		st, err = n.read(rctx, name)
		rcancel()
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			return room.Member{}, "", errNotHere
		}
		if err == nil {
			break
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
	var m room.Member
	landed := false
	for _, o := range st.Members {
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
		return m, st.SID, nil
	}
	if m.ID == "" || m.Node == n.id {
		return room.Member{}, "", errNotHere
	}
	t0 := time.Now()
	answers := n.nodeAnswers(m.Node)
	tPing = time.Since(t0)
	if answers {
		// Alive, or dying and not yet noticed: it must let go first.
		t0 = time.Now()
		var h room.ReleaseResult
		h, m.Released = n.handoff(ctx, m.Node, name, m.ID, tokenHash) // failover.go
		tHandoff = time.Since(t0)
		switch h {
		case room.NotReleased:
			return room.Member{}, "", errNotHere
		case room.StillHeld:
			return room.Member{}, "", fmt.Errorf("node %s: %w", m.Node, room.ErrStillHeld)
		}
	}
	n.rs.follow(n, name)
	t0 = time.Now()
	moved := false
	st, err := n.updateCtx(ctx, takeoverOp, name, func(st *roomState, exists bool) error {
		moved = false
		for i := range st.Members {
			o := &st.Members[i]
			if o.ID != m.ID {
				continue
			}
			if o.Node == n.id && o.Token == newTokenHash {
				moved = true // a write that timed out had landed
				return errNoChange
			}
			if o.Token == tokenHash {
				o.Node, o.Token = n.id, newTokenHash
				moved = true
				return nil
			}
		}
		return errNoChange
	})
	tMove = time.Since(t0)
	if err != nil {
		return room.Member{}, "", err
	}
	if !moved {
		return room.Member{}, "", errNotHere // taken over meanwhile, through another node
	}
	return m, st.SID, nil
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
