package room

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/starling-rtc/starling/protocol"
)

// A resume through another node (cluster failover). When a node dies, its
// clients resume through another one with their resume token. That node
// finds the token's member in the cluster state (Bus.Takeover, which
// checks the old node is really gone and moves the member), and creates
// the participant again with the same id, identity, name, metadata and
// grants, but new peer connections: the join result says newConnections,
// and the client publishes its tracks again. The other participants see
// it stay: its node's stub moves to the new node and only its tracks end
// (remote.go, moveRemote).

// ErrStillHeld is what Bus.Takeover returns (wrapped) when the node that
// holds the participant is alive or not yet known dead and has not
// released it: the resume may succeed if tried again.
var ErrStillHeld = errors.New("the participant's node still holds it")

// ErrNoMember is what Bus.Takeover returns (wrapped) when no member holds
// the token (unknown, used, or the participant's node says it has no such
// session): the session is gone (404).
var ErrNoMember = errors.New("no participant of another node holds this resume token")

func newResumeToken() string { return newID("RS_") + newID("") }

// hashToken is what the cluster state keeps of a resume token.
func hashToken(token string) string {
	h := sha256.Sum256([]byte(token))
	return hex.EncodeToString(h[:])
}

// lostResultWait bounds how long a takeover presented again waits for the
// session that took it over to drop (lostTakeover).
const lostResultWait = 2 * time.Second

// takeoverBudget bounds a resume through this node from its arrival to its
// answer (success, or 503 "try again"): waiting for an earlier attempt
// with the same token and the room state store's steps share it. A client
// waits 15 s for a node's answer before it gives up on that node (the Go
// client's nodeJoinTimeout, the JS library's request timeout); a node that
// held the socket silent past that while the store elected a new leader
// made the client's next attempt queue behind the first, and the client
// spent its whole resume window without an answer.
const takeoverBudget = 10 * time.Second

// takeovers serialises the resumes through this node that present the same
// token: a client whose join timed out may try again while the first
// attempt is still moving the member.
type takeovers struct {
	mu    sync.Mutex
	locks map[string]*tokenLock // by token hash
	// gone: participants released to another node (Release), by room,
	// id and token hash, with when they may be forgotten: a release asked
	// again is answered the same.
	gone map[string]time.Time
	// next: the token a takeover under way hands out, by the hash of the
	// token presented, kept until a takeover with it succeeds: an attempt
	// whose state write landed but was not confirmed (a store timeout) is
	// then recognised by the next attempt as this node's own move.
	next map[string]pendingToken
}

type pendingToken struct {
	token string
	at    time.Time
}

// pendingFor is the new token for a takeover of hash: the one an earlier
// attempt chose, or a new one.
func (t *takeovers) pendingFor(hash string) string {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := time.Now()
	for k, p := range t.next {
		if now.Sub(p.at) > 10*time.Minute {
			delete(t.next, k)
		}
	}
	if p, ok := t.next[hash]; ok {
		return p.token
	}
	if t.next == nil {
		t.next = map[string]pendingToken{}
	}
	tok := newResumeToken()
	t.next[hash] = pendingToken{token: tok, at: now}
	return tok
}

// settled forgets the pending token of a takeover of hash that succeeded.
func (t *takeovers) settled(hash string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.next, hash)
}

// released records a release for window.
func (t *takeovers) released(roomName, id, hash string, window time.Duration) {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := time.Now()
	for k, until := range t.gone {
		if now.After(until) {
			delete(t.gone, k)
		}
	}
	if t.gone == nil {
		t.gone = map[string]time.Time{}
	}
	t.gone[roomName+"\x00"+id+"\x00"+hash] = now.Add(window)
}

// releasedIn lists the participants of roomName released within their
// window.
func (t *takeovers) releasedIn(roomName string) []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := time.Now()
	var out []string
	for k, until := range t.gone {
		if parts := strings.SplitN(k, "\x00", 3); len(parts) == 3 && parts[0] == roomName && now.Before(until) {
			out = append(out, parts[1])
		}
	}
	return out
}

func (t *takeovers) wasReleased(roomName, id, hash string) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	until, ok := t.gone[roomName+"\x00"+id+"\x00"+hash]
	return ok && time.Now().Before(until)
}

type tokenLock struct {
	held  chan struct{} // holds a value while an attempt runs
	users int           // under takeovers.mu
}

// lock waits for the attempts with the same token hash before this one, at
// most until ctx ends (then ok is false and there is nothing to unlock).
func (t *takeovers) lock(ctx context.Context, hash string) (unlock func(), ok bool) {
	t.mu.Lock()
	if t.locks == nil {
		t.locks = map[string]*tokenLock{}
	}
	l := t.locks[hash]
	if l == nil {
		l = &tokenLock{held: make(chan struct{}, 1)}
		t.locks[hash] = l
	}
	l.users++
	t.mu.Unlock()
	done := func() {
		t.mu.Lock()
		if l.users--; l.users == 0 {
			delete(t.locks, hash)
		}
		t.mu.Unlock()
	}
	select {
	case l.held <- struct{}{}:
		return func() { <-l.held; done() }, true
	case <-ctx.Done():
		done()
		return nil, false
	}
}

// takeover resumes a participant of a dead (or releasing) node here.
// Answers: 404 when there is no cluster or no such session; 503 (try
// again) while the participant's node still holds it or the room state
// store does not answer (a new stream leader is being elected): a client
// told 404 ends its session, so only a certain "no" may say it.
func (m *Manager) takeover(roomName, token string, subs *protocol.ResumeSubscriptions, peer Peer) (*Participant, *protocol.JoinResult, error) {
	bus := m.clusterBus()
	if bus == nil {
		return nil, nil, errResume()
	}
	hash := hashToken(token)
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), takeoverBudget)
	defer cancel()
	unlock, ok := m.tk.lock(ctx, hash)
	tLock := time.Since(start)
	if !ok {
		// An earlier attempt with this token is still waiting for the
		// store; its client gave up on it. This one answers in time.
		m.log.Info("resume through this node deferred: an earlier attempt is under way", "room", roomName, "waited", tLock)
		return nil, nil, protocol.Errorf(protocol.CodeUnavailable, "resume: an earlier attempt is under way; try again")
	}
	defer unlock()
	next := m.tk.pendingFor(hash)
	mem, sid, lost := m.lostTakeover(roomName, hash)
	again := lost != nil
	tLost := time.Since(start) - tLock
	var tBus time.Duration
	defer func() {
		m.log.Debug("takeover through this node", "room", roomName, "lock", tLock, "lost", tLost, "bus", tBus,
			"total", time.Since(start))
	}()
	if !again {
		var err error
		t0 := time.Now()
		mem, sid, err = bus.Takeover(ctx, roomName, hash, hashToken(next))
		tBus = time.Since(t0)
		switch {
		case errors.Is(err, ErrNoMember):
			m.tk.settled(hash) // nothing pending: unknown tokens must not pile up
			m.log.Info("resume through this node refused", "room", roomName, "err", err)
			return nil, nil, errResume()
		case errors.Is(err, ErrStillHeld):
			// The participant's node, not yet known dead, did not answer
			// the request to let it go (it is dying). A moment later it
			// has either answered or is known dead. (A live node lets go
			// at once, even of a client whose socket still looks open
			// there: Release.)
			m.log.Info("resume through this node deferred", "room", roomName, "err", err)
			return nil, nil, protocol.Errorf(protocol.CodeUnavailable, "resume: the participant's node has not released it yet; try again")
		case err != nil:
			m.log.Warn("resume through this node deferred: room state unavailable", "room", roomName, "err", err)
			return nil, nil, protocol.Errorf(protocol.CodeUnavailable, "resume: the cluster room state is unavailable; try again")
		}
	}
	req := JoinRequest{
		Room: roomName, Name: mem.Name, Metadata: mem.Metadata, Identity: mem.Identity,
		AutoSubscribe: mem.Auto, Permissions: mem.Perms,
		id: mem.ID, token: next, takeover: true, takeoverHash: hash, restore: subs,
		withdrawn: mem.Withdrawn,
	}
	if mem.JoinedAt != 0 { // a member written before the field: now, as before
		req.joinedAt = time.UnixMilli(mem.JoinedAt)
	}
	if r := m.Room(roomName); r != nil {
		// The old node's view of it. Its tracks died with a dead node; a
		// draining one still forwards them until the client publishes them
		// again here, under the same ids (handover.go).
		req.carry, req.movedFrom = r.retireStub(mem.ID)
	}
	if req.movedFrom == "" && mem.Node != bus.NodeID() {
		req.movedFrom = mem.Node // no part of the room here yet: no stub
	}
	for _, t := range mem.Released { // what the draining node said it published
		if req.carry == nil {
			req.carry = map[string]carried{}
		}
		if _, ok := req.carry[t.CID]; !ok && t.CID != "" {
			req.carry[t.CID] = carried{id: t.ID, kind: t.Kind}
		}
	}
	p, res, err := m.joinLocal(req, peer, sid, bus)
	if err != nil {
		if lost != nil {
			lost.close(protocol.ReasonDisconnected, false) // moving: silently
		}
		return nil, nil, err // the pending token stays: a retry here recognises its own move
	}
	m.tk.settled(hash)
	if again {
		bus.SetToken(roomName, p.id, hashToken(next)) // Takeover wrote it otherwise
	}
	res.NewConnections = true
	p.log.Info("resumed through this node after its node died", "from", mem.Node, "again", again)
	return p, res, nil
}

// lostTakeover handles a token presented again after a takeover through
// this node consumed it: the client never got that join result (its
// request timed out while the room state store was slow, or the socket
// dropped before the answer). If the participant that takeover made has
// not been heard from and its socket dropped (waiting up to
// lostResultWait for the drop), it is released silently and its member
// returned, to be made again with a new token, so the session survives;
// otherwise the token stays used (404).
//
// The participant returned stays in the room, moving (it ends silently),
// until the one made again replaces it (Room.add, same id and identity):
// closing it first left a moment when this node's part of the room did
// not list it, and another node's snapshot taken then (or the room
// closing, empty) told everyone it had left.
func (m *Manager) lostTakeover(roomName, hash string) (Member, string, *Participant) {
	r := m.Room(roomName)
	if r == nil {
		return Member{}, "", nil
	}
	r.mu.Lock()
	var p *Participant
	for _, o := range r.participants {
		if o.tookOverWith == hash {
			p = o
		}
	}
	sid := r.sid
	r.mu.Unlock()
	if p == nil {
		return Member{}, "", nil
	}
	deadline := time.Now().Add(lostResultWait)
	for {
		p.mu.Lock()
		gone := p.closed || p.moving || p.rs.expired || p.rs.token != p.resumeToken
		if gone || p.heard.Load() {
			p.mu.Unlock()
			return Member{}, "", nil
		}
		if p.rs.away {
			p.moving = true
			if p.rs.timer != nil {
				p.rs.timer.Stop()
			}
			mem := p.memberLocked()
			mem.Withdrawn = slices.Sorted(maps.Keys(p.withdrawn)) // what the first takeover carried
			p.mu.Unlock()
			p.log.Info("a takeover's join result was lost: taken over again")
			return mem, sid, p
		}
		p.mu.Unlock()
		if time.Now().After(deadline) {
			return Member{}, "", nil
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// memberLocked is the participant as the cluster state records it, with
// what a takeover needs. Call with p.mu held.
func (p *Participant) memberLocked() Member {
	m := p.member()
	perms := p.perms
	m.Token, m.Name, m.Metadata, m.Auto, m.Perms = hashToken(p.rs.token), p.name, p.metadata, p.autoSubscribe, &perms
	m.JoinedAt = p.joinedAt.UnixMilli()
	m.Withdrawn = p.withdrawnLocked()
	return m
}
