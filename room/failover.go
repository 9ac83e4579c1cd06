package room

import (
	"context"
	"maps"
	"slices"
	"time"

	"github.com/starling-rtc/starling/protocol"
)

// Failover, part two (takeover.go is part one: a resume through another
// node of a participant whose node died). Here:
//   - a node that died: the tracks its participants published end at once
//     everywhere, but the participants stay for the resume window, so that
//     they resume through another node unseen by the others (nodeDied);
//   - draining (SIGTERM on a cluster node): the node stops taking joins,
//     asks each client to resume through another node (`reconnect`), and
//     releases each participant to the node it resumes through (Release),
//     silently: nobody sees it leave (docs/cluster-failover.md).

// nodeDied handles a node that stopped (no heartbeat, or goodbye). With
// no resume window its participants leave now. Else they leave when the
// window ends, unless the node was heard from again meanwhile (an event
// or a snapshot of it applied: it was cut off, not dead, and what it sent
// says who it still has) or died again (the later window decides).
func (r *Room) nodeDied(node string, window time.Duration) {
	if window <= 0 {
		r.ForgetNode(node)
		return
	}
	r.mu.Lock()
	var stubs []*Participant
	for _, p := range r.remotes {
		if p.node == node {
			stubs = append(stubs, p)
		}
	}
	delete(r.remoteSeq, node)
	r.deaths++
	death := r.deaths
	if r.nodeDeath == nil {
		r.nodeDeath = map[string]uint64{}
	}
	r.nodeDeath[node] = death
	r.mu.Unlock()
	for _, p := range stubs {
		p.mu.Lock()
		ids := make([]string, 0, len(p.tracks))
		for id := range p.tracks {
			ids = append(ids, id)
		}
		p.mu.Unlock()
		for _, id := range ids {
			r.remoteUnpublished(id) // their media came from that node's connections
		}
	}
	if len(stubs) == 0 {
		return
	}
	time.AfterFunc(window, func() {
		r.mu.Lock()
		_, heard := r.remoteSeq[node]
		latest := r.nodeDeath[node] == death
		if latest {
			delete(r.nodeDeath, node)
		}
		r.mu.Unlock()
		if heard || !latest {
			return
		}
		for _, p := range stubs {
			r.mu.Lock()
			still := r.remotes[p.id] == p // not moved to another node meanwhile
			r.mu.Unlock()
			if still {
				r.remoteLeft(p.id, protocol.ReasonDisconnected)
			}
		}
	})
}

// ResumeWindow is how long a participant whose connection is gone may resume.
func (m *Manager) ResumeWindow() time.Duration { return m.cfg.ResumeWindow }

// MaxParticipants is the participant limit of every room (0: none).
func (m *Manager) MaxParticipants() int { return m.limits().MaxParticipants }

// ReleaseResult is what Release did.
type ReleaseResult int

const (
	// NotReleased: no live participant holds that token here.
	NotReleased ReleaseResult = iota
	// Released: the participant is gone from this node.
	Released
	// StillHeld: the participant's node did not answer whether it let go
	// (cluster: its handoff request timed out; it may be dying): the
	// resume elsewhere may be tried again shortly. Release itself never
	// answers it.
	StillHeld
)

// Release ends a local participant that resumes through another node,
// if tokenHash is its valid token's: nobody sees it leave, its tracks end
// (it publishes them again there), its connections close, and its socket,
// if still open, closes without `leave`. A socket that still looks open
// here does not keep it: the resume token is the credential, and a client
// resumes only when it lost its socket, so one that still looks open is
// half-open (the network between died and this node's keepalive has not
// noticed yet, up to limits.idle_timeout) — as a resume on one node
// replaces a socket not yet seen dead. It used to answer StillHeld until
// the socket was seen to drop, and the client's resume through another
// node got 503 for up to 30 s (TestResumeTakesOverHalfOpenSocket).
func (m *Manager) Release(roomName, id, tokenHash string) ReleaseResult {
	res, _ := m.ReleaseTracks(roomName, id, tokenHash)
	return res
}

// HandedOver is what a node that releases a participant tells the node it
// resumes through.
type HandedOver struct {
	// Tracks: when this node drains, the tracks the participant published
	// here: the node it moves to gives them the same ids when it publishes
	// them again (handover.go).
	Tracks []protocol.Track
	// Withdrawn: the client track ids it unpublished by request while its
	// SDP still sends them: they stay unpublished there (withdrawn.go).
	Withdrawn []string
}

// ReleaseTracks is Release, and what the node the participant moves to
// needs of its state here (HandedOver).
func (m *Manager) ReleaseTracks(roomName, id, tokenHash string) (ReleaseResult, HandedOver) {
	var h HandedOver
	if m.tk.wasReleased(roomName, id, tokenHash) {
		// Asked again: the node it resumes through could not move its
		// member the first time (the room state store was unavailable).
		return Released, h
	}
	r := m.Room(roomName)
	if r == nil {
		return NotReleased, h
	}
	r.mu.Lock()
	p := r.participants[id]
	r.mu.Unlock()
	if p == nil {
		return NotReleased, h
	}
	draining := m.Draining()
	p.mu.Lock()
	if p.closed || p.moving || p.rs.expired || hashToken(p.rs.token) != tokenHash {
		p.mu.Unlock()
		return NotReleased, h
	}
	var mine []*Track
	if draining {
		for _, t := range p.tracks {
			mine = append(mine, t)
		}
	}
	h.Withdrawn = slices.Sorted(maps.Keys(p.withdrawn))
	p.moving = true
	p.lingering = draining // make-before-break: its media goes on until the others took it over (handover.go)
	if p.rs.timer != nil {
		p.rs.timer.Stop()
	}
	old := p.rs.slot.get()
	p.rs.slot.set(nil)
	p.mu.Unlock()
	if rp, ok := old.(Replaceable); ok {
		rp.Replaced("resumed through another node")
	}
	m.tk.released(roomName, id, tokenHash, m.cfg.ResumeWindow)
	p.log.Info("released: it resumed through another node")
	h.Tracks = make([]protocol.Track, 0, len(mine))
	for _, t := range mine {
		h.Tracks = append(h.Tracks, t.Info())
	}
	p.close(protocol.ReasonDisconnected, false)
	return Released, h
}

func (p *Participant) isMoving() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.moving
}

// Drain stops taking joins and resumes, asks every local participant's
// client to resume through another node (`reconnect`, then its socket
// closes), and waits until they all have (each is released to its new
// node) or ctx ends. The caller then shuts down as usual: participants
// still here get `leave`.
func (m *Manager) Drain(ctx context.Context) (left int) {
	m.mu.Lock()
	m.draining = true
	rooms := slices.Collect(maps.Values(m.rooms))
	m.mu.Unlock()
	for _, r := range rooms {
		r.mu.Lock()
		ps := slices.Collect(maps.Values(r.participants))
		r.mu.Unlock()
		for _, p := range ps {
			p.askReconnect()
		}
	}
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		// Released participants' media still relayed counts as not done:
		// the node must not shut down under it (handover.go).
		if left = m.Snapshot().Participants; left == 0 && m.handingOver.Load() == 0 {
			return 0
		}
		select {
		case <-ctx.Done():
			return left
		case <-tick.C:
		}
	}
}

// askReconnect sends `reconnect` and closes the participant's socket
// without `leave`; the participant waits, away, for its resume elsewhere.
func (p *Participant) askReconnect() {
	cur := p.rs.slot.get()
	if cur == nil {
		return // away already: its client is resuming
	}
	cur.Notify(protocol.NotifyReconnect, protocol.ReconnectParams{Reason: protocol.ReasonDrain})
	if rp, ok := cur.(Replaceable); ok {
		rp.Replaced("node draining: resume through another node") // closes the socket after what is queued, without leave
	}
	p.Detach(cur)
}

// LocalMembers lists this node's participants as the cluster state
// records them, for a node that finds its members missing from the state
// (cut off from the bus for longer than the resume window: the others
// purged them) and adds them back.
func (r *Room) LocalMembers() []Member {
	r.mu.Lock()
	ps := slices.Collect(maps.Values(r.participants))
	r.mu.Unlock()
	out := make([]Member, 0, len(ps))
	for _, p := range ps {
		p.mu.Lock()
		if p.closed || p.moving {
			p.mu.Unlock()
			continue
		}
		m := p.memberLocked()
		p.mu.Unlock()
		out = append(out, m)
	}
	return out
}
