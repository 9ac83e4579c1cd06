package cluster

import (
	"context"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/starling-rtc/starling/protocol"
	"github.com/starling-rtc/starling/room"
)

// A node restarted with the same --node-id (a supervisor restarting a
// crashed process) finds in the room state the members its previous run
// left behind: that run was killed, so nobody removed them. They are the
// participants of a dead node, and are treated as such (docs/cluster.md
// "A node restarted with the same id"): they stay for the resume window,
// so that their clients resume through another node, and are removed
// after it (participant_left "disconnected", once).
//
// The other nodes cannot tell them from this run's members (the same
// node id, and this node answers its pings): this node speaks for them.
// Asked to hand one over (handoff, failover.go), it releases it; asked
// for its part of a room (a snapshot), it names them as moved, so the
// other nodes keep their stubs until they resume or the window ends.
//
// Before, the node purged them at its start, reading the keys from its
// own replica of the store, which was still catching up: it found none,
// they stayed in the room for good (the other nodes listed them, the
// room never closed, a limited room kept their places), and their resume
// through another node got 404 (the node asked to hand them over did not
// know them).

// priorMember is a member of this node's previous run.
type priorMember struct {
	key  string
	room string
	e    memberEntry
}

// priorMembers holds them, by member id, until they resume elsewhere or
// are removed.
type priorMembers struct {
	mu sync.Mutex
	m  map[string]priorMember
}

// loadPrior lists the members under this node's id, as the store's leader
// has them (a replica of a node that just started may still be empty),
// and removes them once the resume window has passed.
func (n *Node) loadPrior() {
	filters := []string{"*.m." + enc(n.id) + ".*"}
	found := map[string]priorMember{}
	err := n.retry(func(ctx context.Context) error {
		newest, err := n.leaderLastChange(ctx, filters)
		if err != nil {
			return err
		}
		clear(found)
		return n.readKeysThrough(ctx, filters, newest, catchUpWait, func(e jetstream.KeyValueEntry) {
			p, _, ok := strings.Cut(e.Key(), ".m.")
			if !ok || !strings.HasPrefix(p, "r") {
				return
			}
			raw, err := base64.RawURLEncoding.DecodeString(p[1:])
			if err != nil {
				return
			}
			var me memberEntry
			if e.Operation() != jetstream.KeyValuePut || json.Unmarshal(e.Value(), &me) != nil || me.ID == "" {
				delete(found, e.Key())
				return
			}
			found[e.Key()] = priorMember{key: e.Key(), room: string(raw), e: me}
		})
	})
	if err != nil {
		n.log.Warn("room state: this node's members from before its restart not listed", "err", err)
		return
	}
	if len(found) == 0 {
		return
	}
	n.prior.mu.Lock()
	n.prior.m = map[string]priorMember{}
	for _, pm := range found {
		n.prior.m[pm.e.ID] = pm
	}
	n.prior.mu.Unlock()
	n.log.Info("members of this node's previous run found: they may resume through another node until the resume window ends", "members", len(found))
	window := time.Duration(0)
	if n.rooms != nil {
		window = n.rooms.ResumeWindow()
	}
	n.spawn(func() {
		select {
		case <-time.After(window):
		case <-n.stop:
			return
		}
		n.prior.mu.Lock()
		left := n.prior.m
		n.prior.m = nil
		n.prior.mu.Unlock()
		n.removePrior(left, protocol.ReasonDisconnected)
	})
}

// removePrior removes members of the previous run (those still under this
// node's id: one taken over meanwhile is not) and sends their
// participant_left.
func (n *Node) removePrior(ms map[string]priorMember, reason string) {
	emptied := map[string]bool{}
	for _, pm := range ms {
		if e, _, ok := n.removeMemberEntry(pm.room, pm.key, pm.e.ID); ok {
			emptied[pm.room] = true
			n.memberGone(pm.room, e.Member, reason) // deadmembers.go
		}
	}
	for name := range emptied {
		n.maybeEmpty(name, nil, 0)
	}
}

// releasePrior answers a handoff of a member of the previous run: released
// when the token matches (the caller moves its key).
func (n *Node) releasePrior(name, id, tokenHash string) bool {
	n.prior.mu.Lock()
	defer n.prior.mu.Unlock()
	pm, ok := n.prior.m[id]
	// Kept after a release: a takeover whose move failed (503) is tried
	// again, and its handoff must be answered the same way.
	return ok && pm.room == name && pm.e.Token != "" && subtle.ConstantTimeCompare([]byte(pm.e.Token), []byte(tokenHash)) == 1
}

// priorIn lists the previous run's members of a room, for its snapshot.
func (n *Node) priorIn(name string) []string {
	n.prior.mu.Lock()
	defer n.prior.mu.Unlock()
	var ids []string
	for id, pm := range n.prior.m {
		if pm.room == name {
			ids = append(ids, id)
		}
	}
	return ids
}

// kickPrior carries out a kick of a member of the previous run at once,
// as for a dead node's participant (evictDead); false if it is not one.
func (n *Node) kickPrior(name string, ev room.Event) bool {
	if ev.Type != room.CtlKick {
		return false
	}
	n.prior.mu.Lock()
	pm, ok := n.prior.m[ev.ParticipantID]
	n.prior.mu.Unlock()
	if !ok || pm.room != name {
		return false
	}
	// The other nodes are told to drop their stubs (evictDead): a node
	// that has just started may not have heard them yet (their heartbeats
	// come every second), and would tell nobody.
	n.reg.mu.Lock()
	heardFrom := n.reg.since
	n.reg.mu.Unlock()
	for wait := time.Until(heardFrom.Add(hbInterval + hbInterval/2)); wait > 0; wait = 0 {
		select {
		case <-time.After(wait):
		case <-n.stop:
			return true
		}
	}
	// Forgotten only once evicted: a snapshot answered meanwhile still
	// names it as moved, so no node drops its stub as "disconnected" just
	// before the "kicked" of the eviction reaches it.
	n.evictDead(n.id, name, ev, nil)
	n.prior.mu.Lock()
	delete(n.prior.m, ev.ParticipantID)
	n.prior.mu.Unlock()
	return true
}

// earlierRunGone: a node was killed and started again with the same id
// before its heartbeats expired here, so the expiry never saw its earlier
// run die. That run's tracks end now (their media came from its
// connections; their track_unpublished is sent), its relay streams close
// (the new run numbers its streams afresh), and its participants wait
// for the resume window, as for any dead node; the restarted node removes
// those that do not resume (loadPrior). Before, they kept their tracks,
// published without media, until then, and no track_unpublished was sent.
func (n *Node) earlierRunGone(id string) {
	n.log.Warn("node restarted: its earlier run is gone", "node", id)
	n.spawn(func() { // off the heartbeat goroutine
		n.deadTracks(id) // hookonce.go
		n.nodeGone(id)
	})
}
