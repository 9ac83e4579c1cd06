package cluster

import (
	"context"
	"encoding/json"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
)

// Presence: when may a node that stopped heartbeating be taken for dead,
// i.e. certainly no longer doing what only one node may do (record a
// room)? A crashed node and one cut off from the bus look the same from
// outside: both fall silent. So the rule binds both sides
// (docs/cluster.md "Recording after a node crash"):
//
//   - a node that has heard fewer than a majority of the cluster's nodes
//     (itself included) for isolatedAfter knows it is cut off, and stops
//     what it must not do alone (HearsMajority);
//   - another node declares it dead only when a majority of the nodes
//     (the declaring node included, the silent one not) have not heard
//     it for deadAfter, which is isolatedAfter plus a margin for a
//     heartbeat in flight and a stalled process (KnownDead).
//
// Two majorities of one set of nodes share a node; a route carries
// heartbeats both ways or neither, so that node cannot have been heard by
// the silent node within isolatedAfter and not have heard it for
// deadAfter. The set of nodes is the one each node heard within
// memberMemory: the same on every node unless nodes joined or left in the
// last minute.
const (
	isolatedAfter = 5 * time.Second
	deadAfter     = 10 * time.Second
	memberMemory  = time.Minute
	// minQuorumNodes: with fewer nodes no majority can declare another
	// dead (two nodes: the survivor alone is no majority), so nothing is
	// fenced either.
	minQuorumNodes = 3
	heardTimeout   = time.Second
)

// presence keeps when each other node was last heard (its heartbeat), for
// memberMemory after it fell silent; a node that shut down (its goodbye,
// or after a drain its "left" notice) is forgotten at once, so that the
// nodes left still make a majority of the count.
type presence struct {
	mu    sync.Mutex
	heard map[string]time.Time
}

func (p *presence) note(id string, at time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.heard == nil {
		p.heard = map[string]time.Time{}
	}
	p.heard[id] = at
}

func (p *presence) forget(id string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.heard, id)
}

// last is when id was last heard; ok false when not within memberMemory.
func (p *presence) last(id string) (time.Time, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	t, ok := p.heard[id]
	if !ok || time.Since(t) > memberMemory {
		return time.Time{}, false
	}
	return t, true
}

// count returns the cluster's nodes as this node knows them (itself and
// the others heard within memberMemory) and how many of the others were
// heard within recent.
func (p *presence) count(recent time.Duration) (members, heard int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	members = 1
	for id, t := range p.heard {
		age := time.Since(t)
		if age > memberMemory {
			delete(p.heard, id)
			continue
		}
		members++
		if age <= recent {
			heard++
		}
	}
	return members, heard
}

// HearsMajority reports whether this node has heard, within
// isolatedAfter, a majority of the cluster's nodes (itself included), or
// the cluster is too small for any majority to declare it dead. A node
// that does not may be declared dead by the others soon (KnownDead): it
// must stop recording.
func (n *Node) HearsMajority() bool {
	members, heard := n.pres.count(isolatedAfter)
	return members < minQuorumNodes || 2*(1+heard) > members
}

// heardReply answers starling.node.<id>.heard: how long ago this node
// last heard the node asked about (-1: not within memberMemory).
type heardReply struct {
	AgoMillis int64 `json:"agoMs"`
}

func (n *Node) subscribeHeard() error {
	_, err := n.bus.nc.Subscribe(nodeSubject(n.id, "heard"), func(m *nats.Msg) {
		rep := heardReply{AgoMillis: -1}
		if t, ok := n.pres.last(string(m.Data)); ok {
			rep.AgoMillis = time.Since(t).Milliseconds()
		}
		data, _ := json.Marshal(rep)
		_ = m.Respond(data)
	})
	return err
}

// KnownDead reports whether node is dead by the rule above: this node
// has not heard it for deadAfter, and with the live nodes that say the
// same (asked over the bus) this node makes a majority of the cluster's
// nodes; a live node that heard it more recently vetoes. A node that is
// only cut off has stopped recording by then (HearsMajority).
func (n *Node) KnownDead(ctx context.Context, node string) bool {
	if node == "" || node == n.id {
		return false
	}
	if t, ok := n.pres.last(node); ok && time.Since(t) < deadAfter {
		return false
	}
	members, _ := n.pres.count(0)
	if _, ok := n.pres.last(node); !ok {
		members++ // forgotten already: it still counts as one of the nodes
	}
	if members < minQuorumNodes {
		return false
	}
	var others []string
	for _, o := range n.reg.list() {
		if o.ID != n.id && o.ID != node {
			others = append(others, o.ID)
		}
	}
	type answer struct{ ok, veto bool }
	answers := make(chan answer, len(others))
	for _, o := range others {
		go func() {
			rctx, cancel := context.WithTimeout(ctx, heardTimeout)
			defer cancel()
			msg, err := n.bus.nc.RequestWithContext(rctx, nodeSubject(o, "heard"), []byte(node))
			var rep heardReply
			if err != nil || json.Unmarshal(msg.Data, &rep) != nil {
				answers <- answer{}
				return
			}
			silent := rep.AgoMillis < 0 || time.Duration(rep.AgoMillis)*time.Millisecond >= deadAfter
			answers <- answer{ok: silent, veto: !silent}
		}()
	}
	agree := 1 // this node
	veto := false
	for range others {
		a := <-answers
		if a.ok {
			agree++
		}
		veto = veto || a.veto
	}
	dead := !veto && 2*agree > members
	n.log.Debug("is the node dead?", "node", node, "members", members, "agree", agree, "veto", veto, "dead", dead)
	return dead
}
