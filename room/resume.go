package room

import (
	"crypto/subtle"
	"sync/atomic"
	"time"

	"github.com/pion/webrtc/v4"
	"github.com/starling-rtc/starling/protocol"
)

// Resume (docs/PROTOCOL.md "Resume"). When a participant's signaling socket
// drops, the participant stays in its room for Config.ResumeWindow with its
// connections, published tracks and subscriptions, and the others see
// nothing. A `join {room, resume: token}` on a new socket re-attaches it
// (Manager.Resume): its Peer is swapped, the token rotates, and the next
// subscriber offer restarts ICE. After the window it leaves for good with
// reason "disconnected". Notifications sent while it was away are dropped,
// not replayed: the join result carries the room as it is now.

// Replaceable is an optional Peer extension. A client may resume on a new
// socket before its old one is seen to drop; Replaced then tells the old
// session that it no longer speaks for the participant and should close
// without `leave`, saying why (the WebSocket close reason).
type Replaceable interface {
	Replaced(why string)
}

// errResume is the one answer to every resume that cannot be honoured, so a
// client cannot learn which rooms or participants exist.
func errResume() error {
	return protocol.Errorf(protocol.CodeNotFound, "resume: unknown or expired resume token")
}

// maxResumeToken bounds what is compared against tokens.
const maxResumeToken = 128

// resumeState is a participant's side of resuming; guarded by Participant.mu
// except slot, which is atomic.
type resumeState struct {
	slot    peerSlot    // the Peer everyone notifies: the current session, or none while away
	token   string      // the valid resume token; rotated by each resume
	away    bool        // the socket is gone: waiting for a resume
	expired bool        // the window ran out: too late to resume
	gen     int         // counts detaches and resumes, to match window timers
	timer   *time.Timer // ends the window
}

// init sets the first session and token and returns the Peer to use as
// Participant.peer.
func (rs *resumeState) init(peer Peer, token string) Peer {
	rs.slot.set(peer)
	rs.token = token
	return &rs.slot
}

// peerSlot is a Peer that forwards to the participant's current session, so
// a resume swaps the session atomically for every goroutine that notifies
// it. While the client is away there is no session and notifications drop.
type peerSlot struct{ cur atomic.Pointer[peerBox] }

type peerBox struct{ peer Peer }

func (s *peerSlot) set(p Peer) {
	if p == nil {
		s.cur.Store(nil)
		return
	}
	s.cur.Store(&peerBox{p})
}

func (s *peerSlot) get() Peer {
	if b := s.cur.Load(); b != nil {
		return b.peer
	}
	return nil
}

// Notify implements Peer.
func (s *peerSlot) Notify(method string, params any) {
	if p := s.get(); p != nil {
		p.Notify(method, params)
	}
}

// End implements Peer.
func (s *peerSlot) End(reason string) {
	if p := s.get(); p != nil {
		p.End(reason)
	}
}

// Detach is called when peer's signaling socket is gone. With a resume
// window the participant stays, silently, until it resumes or the window
// ends; with none it leaves now. A peer that no longer speaks for the
// participant (a resume replaced it) changes nothing.
func (p *Participant) Detach(peer Peer) {
	window := p.m.cfg.ResumeWindow
	p.mu.Lock()
	if p.closed || p.rs.away || p.rs.slot.get() != peer {
		p.mu.Unlock()
		return
	}
	if window <= 0 {
		p.mu.Unlock()
		p.close(protocol.ReasonDisconnected, false)
		return
	}
	p.rs.slot.set(nil)
	p.rs.away = true
	p.rs.gen++
	gen := p.rs.gen
	p.rs.timer = time.AfterFunc(window, func() { p.expire(gen) })
	p.mu.Unlock()
	p.loop.post(p.loop.hold)
	p.log.Info("signaling socket lost, waiting for a resume", "window", window)
}

// expire ends the participant when the window of detach gen ran out.
func (p *Participant) expire(gen int) {
	p.mu.Lock()
	if p.closed || !p.rs.away || p.rs.gen != gen {
		p.mu.Unlock()
		return
	}
	p.rs.expired = true
	p.mu.Unlock()
	p.log.Info("no resume within the window")
	p.close(protocol.ReasonDisconnected, false)
}

// Away reports whether the participant's socket is gone and it may still
// resume.
func (p *Participant) Away() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.rs.away
}

// mediaFailed handles a peer connection that failed for good. While the
// socket is alive that ends the participant, as before resume existed; while
// the client is away the window decides, and the ICE restart that follows a
// resume may still bring the connection back.
func (p *Participant) mediaFailed(which, why string) {
	if p.Away() {
		p.log.Info("media connection failed while the client is away; the resume window decides", "connection", which, "state", why)
		return
	}
	p.log.Info("media connection failed", "connection", which, "state", why)
	p.close(protocol.ReasonDisconnected, true)
}

// hasResumeToken reports whether token is the participant's valid token.
func (p *Participant) hasResumeToken(token string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return !p.closed && !p.rs.expired && subtle.ConstantTimeCompare([]byte(p.rs.token), []byte(token)) == 1
}

// reattach makes peer the participant's session if token is still valid,
// and rotates the token: each one works once. old is the session it
// replaces (nil when the client was away).
func (p *Participant) reattach(token string, peer Peer) (old Peer, next string, ok bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed || p.rs.expired || subtle.ConstantTimeCompare([]byte(p.rs.token), []byte(token)) != 1 {
		return nil, "", false
	}
	old = p.rs.slot.get()
	p.rs.slot.set(peer)
	p.rs.away = false
	p.rs.gen++
	if p.rs.timer != nil {
		p.rs.timer.Stop()
		p.rs.timer = nil
	}
	p.rs.token = newID("RS_") + newID("")
	return old, p.rs.token, true
}

// Resumed restarts the subscriber negotiation after a resume; call it after
// the join result is sent, so the next `offer` follows it. That offer
// restarts ICE; an offer left unanswered when the socket dropped is offered
// again first.
func (p *Participant) Resumed() {
	if p.takenOver { // new connections: negotiate from the start
		p.Start()
		return
	}
	p.loop.post(p.loop.resume)
}

// Resume re-attaches the participant holding token in room roomName to
// peer, the session of a new socket. Every failure is the same 404, so
// tokens cannot be probed. The caller sends the result, then calls
// Participant.Resumed.
func (m *Manager) Resume(roomName, token string, peer Peer) (*Participant, *protocol.JoinResult, error) {
	return m.ResumeWith(roomName, token, nil, peer)
}

// ResumeWith is Resume with what the client asked of its subscriptions
// (protocol.JoinParams.Subscriptions): a takeover through this node, which
// has none of the participant's state, restores them; a resume on the
// node that kept the participant ignores them.
func (m *Manager) ResumeWith(roomName, token string, subs *protocol.ResumeSubscriptions, peer Peer) (*Participant, *protocol.JoinResult, error) {
	if m.Draining() {
		return nil, nil, errShuttingDown()
	}
	if token == "" || len(token) > maxResumeToken || m.cfg.ResumeWindow <= 0 {
		return nil, nil, errResume()
	}
	r := m.Room(roomName)
	var p *Participant
	if r != nil {
		p = r.resumable(token)
	}
	if p == nil {
		return m.takeover(roomName, token, subs, peer) // see takeover.go
	}
	old, next, ok := p.reattach(token, peer)
	if !ok {
		return nil, nil, errResume()
	}
	if r.bus != nil {
		r.bus.SetToken(r.name, p.id, hashToken(next))
	}
	if old != nil {
		if rp, ok := old.(Replaceable); ok {
			rp.Replaced("resumed on another connection")
		}
	}
	p.log.Info("resumed", "wasAway", old == nil)
	return p, r.resumeResult(p, next), nil
}

// resumable finds the participant whose valid resume token is token.
func (r *Room) resumable(token string) *Participant {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, p := range r.participants {
		if p.hasResumeToken(token) {
			return p
		}
	}
	return nil
}

// resumeResult is the join result of a resume: the room as it is now, so
// the client can resync what it missed while away.
func (r *Room) resumeResult(p *Participant, token string) *protocol.JoinResult {
	infos := r.infosExcept(p)
	res := &protocol.JoinResult{
		Participant:  p.Info(),
		Room:         protocol.Room{Name: r.name, SID: r.sid},
		Participants: infos,
		// The same servers as a join (TURN credentials made for the
		// identity): a resumed client restarts ICE through them.
		ICEServers:  r.m.clientICEServers(p.identity),
		ResumeToken: token,
	}
	if res.ICEServers == nil {
		res.ICEServers = []webrtc.ICEServer{}
	}
	return res
}

// loopResume is the subscriber loop's side of resuming; owned by the loop.
type loopResume struct {
	held    bool // the client is away: changes wait, no offers are made
	restart bool // the next new offer restarts ICE
}

// hold stops offers while the client is away; an offer in flight can no
// longer be answered, so its timeout must not end the participant.
func (l *subscriberLoop) hold() {
	l.rs.held = true
	if l.inFlight && l.timer != nil {
		l.timer.Stop()
		l.gen++ // a timeout already queued no longer matches
	}
}

// resume lets offers go again, the next one with an ICE restart. An offer
// still in flight is made again first (createOffer), since its answer may
// have been lost with the old socket; but not one that already went out on
// the session now current (an offer made between the resume's reattach and
// this call, or a restart of an earlier resume that came late): the client
// answers it on this socket, and sending it again made it answer twice, the
// second answer then being taken for the restart's and the real one
// refused, leaving mismatched ICE credentials (issue 17). The protocol's
// answer carries no offer id, so one offer in flight per socket is what
// keeps answers matched to offers.
func (l *subscriberLoop) resume() {
	l.rs.held = false
	l.rs.restart = true
	if l.inFlight && l.offeredTo != nil && l.offeredTo == l.p.rs.slot.get() {
		// Its timeout runs on: hold stops it only when this session
		// detaches, and a session never comes back.
		return
	}
	if l.inFlight {
		l.inFlight = false
		if l.timer != nil {
			l.timer.Stop()
		}
		l.gen++
	}
}

// offerDue reports whether the loop should send an offer now.
func (l *subscriberLoop) offerDue() bool {
	return l.started && (l.dirty || l.rs.restart) && !l.inFlight && !l.rs.held && !l.p.answering
}

// createOffer makes the next subscriber offer: the one still pending if
// there is one (pion cannot replace a pending local offer), else a new one,
// restarting ICE after a resume.
func (l *subscriberLoop) createOffer() (string, error) {
	if l.rs.restart && !l.p.sub.ICEStarted() {
		// Nothing to restart yet: the connection's first offer was never
		// answered (its answer was lost with the old socket), or pion is
		// still starting the transports after that answer. A restart then
		// lost the race with that start: pion started ICE with the first
		// answer's credentials after the restart's answer had set the new
		// ones, so the server checked for a password the client no longer
		// used and the connection, with the data held for it, never came up.
		// The first answer starts ICE with fresh candidates anyway.
		l.rs.restart = false
	}
	if sdp, ok := l.p.sub.PendingOffer(); ok {
		return sdp, nil
	}
	if l.rs.restart {
		l.p.log.Info("subscriber ICE restart", "peerUp", l.p.sub.PeerUp(), "state", l.p.sub.Describe())
		sdp, err := l.p.sub.CreateRestartOffer()
		if err == nil {
			l.rs.restart = false
		}
		return sdp, err
	}
	return l.p.sub.CreateOffer()
}
