// Package room holds rooms, participants, their published tracks and
// subscriptions, and schedules each participant's subscriber negotiation. It
// speaks to clients only through the Peer interface and to media only
// through package sfu.
package room

import (
	"context"
	"log/slog"
	"maps"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/webrtc/v4"
	"github.com/starling-rtc/starling/mixer"
	"github.com/starling-rtc/starling/protocol"
	"github.com/starling-rtc/starling/sfu"
)

// Peer is a participant's signaling session as the room sees it.
type Peer interface {
	// Notify queues a notification; it never blocks.
	Notify(method string, params any)
	// End sends `leave` with the reason and closes the session.
	End(reason string)
}

// Config configures a Manager.
type Config struct {
	Engine             *sfu.Engine
	ICEServers         []webrtc.ICEServer // handed to clients in join
	EmptyTimeout       time.Duration      // an empty room closes after this
	NegotiationTimeout time.Duration      // a subscriber offer unanswered this long ends the session
	ResumeWindow       time.Duration      // a participant whose socket dropped may resume this long; 0 = no resume
	Logger             *slog.Logger
	Limits             Limits // see limits.go
	Mix                mixer.Config
}

// Manager owns every room of this node.
type Manager struct {
	cfg      Config
	log      *slog.Logger
	mu       sync.Mutex
	rooms    map[string]*Room
	draining bool
	wg       sync.WaitGroup // participants not yet fully closed
	// handingOver counts participants released by this draining node whose
	// media still goes to other nodes (handover.go).
	handingOver  atomic.Int32
	shuttingDown atomic.Bool             // Shutdown began: released participants' media stops at once
	released     map[string]*Participant // lingering released participants, by room and id; under mu (handover.go)
	obs          observers               // see observer.go
	bus          Bus                     // nil on a single node (cluster.go)
	tk           takeovers               // resumes through this node under way (takeover.go)

	iceFunc func(identity string) []webrtc.ICEServer // see events.go

	// lingering are sessions sent `leave` that may still be flushing it
	// and closing their sockets; Shutdown waits for them (see Linger).
	lingering []<-chan struct{}
}

// NewManager makes a manager with defaults for unset durations.
func NewManager(cfg Config) *Manager {
	if cfg.EmptyTimeout <= 0 {
		cfg.EmptyTimeout = 10 * time.Second
	}
	if cfg.NegotiationTimeout <= 0 {
		cfg.NegotiationTimeout = 15 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Manager{cfg: cfg, log: cfg.Logger, rooms: map[string]*Room{}}
}

// JoinRequest is a validated join.
type JoinRequest struct {
	Room          string
	Name          string
	Metadata      string
	Identity      string // from the token's sub; "" = a new identity
	AutoSubscribe bool
	Permissions   *Permissions // from the token's grants; nil = AllPermissions

	id       string // participant id chosen before the cluster admits it
	token    string // its resume token, likewise
	takeover bool   // a resume through this node of a participant whose node died
	// takeoverHash is the hash of the token that takeover consumed.
	takeoverHash string
	// restore: the subscriptions a takeover restores (restore.go).
	restore *protocol.ResumeSubscriptions
	// carry: the ids of the tracks the participant published on its old
	// node, by the client's track id: published again here, they keep them
	// (handover.go).
	carry     map[string]carried
	movedFrom string // the node it was taken over from (handover.go)
	// withdrawn: client track ids unpublished by request on its old node
	// that its SDP still sends: they stay unpublished here (withdrawn.go).
	withdrawn []string
	// joinedAt: when it first joined (a takeover keeps it); zero = now.
	joinedAt time.Time
	AudioMix bool // receive the room's audio mix (mix.go)
	// Answering: the client signals over HTTP (WHIP, WHEP, see answer.go).
	// It offers on both connections; the server only answers, with every
	// candidate in the answer, and changes subscriptions without offers.
	Answering bool
}

// Join adds a participant to a room, creating the room on first join. The
// caller sends the result, then calls Participant.Start.
func (m *Manager) Join(req JoinRequest, peer Peer) (*Participant, *protocol.JoinResult, error) {
	bus := m.clusterBus()
	sid := ""
	if bus != nil {
		// The cluster admits first: room sid, max participants and
		// identities are cluster-wide facts (cluster.go).
		if m.Draining() {
			return nil, nil, errShuttingDown()
		}
		req.id = newID("PA_")
		identity := req.Identity
		if identity == "" {
			identity = req.id
		}
		req.token = newResumeToken()
		req.joinedAt = time.Now()
		var err error
		sid, err = bus.Join(req.Room, Member{ID: req.id, Identity: identity, Node: bus.NodeID(), Token: hashToken(req.token),
			Name: req.Name, Metadata: req.Metadata, Auto: req.AutoSubscribe, Perms: req.Permissions,
			JoinedAt: req.joinedAt.UnixMilli()}, m.limits().MaxParticipants)
		if err != nil {
			return nil, nil, err
		}
	}
	return m.joinLocal(req, peer, sid, bus)
}

// joinLocal creates the participant here, in the local part of the room
// (created with sid when it does not exist yet).
func (m *Manager) joinLocal(req JoinRequest, peer Peer, sid string, bus Bus) (*Participant, *protocol.JoinResult, error) {
	for {
		m.mu.Lock()
		if m.draining {
			m.mu.Unlock()
			if !req.takeover { // a takeover's member is left for its client's next try (takeover.go)
				m.leaveBus(bus, req)
			}
			return nil, nil, errShuttingDown()
		}
		r := m.rooms[req.Room]
		if r != nil && sid != "" && !req.takeover && r.sid != sid {
			// This node's part is of an instance the cluster closed: the
			// admin deleted the room (its close command, or the watch
			// that would close the part, not here yet) and this join
			// opened a new one in its place. Added to the old part, the
			// participant was in a room nobody else saw, with the
			// deleted room's sid, until that part closed and ended it
			// (TestJoinIntoDeletedRoomsPart). Close it now, as the
			// command would, and open the new instance's part.
			m.mu.Unlock()
			m.log.Info("closing this node's part of a room instance the cluster closed", "room", req.Room, "sid", r.sid, "new_sid", sid)
			r.Close(protocol.ReasonRoomClosed)
			m.waitRemoved(r)
			continue
		}
		if err := m.roomsFull(); r == nil && err != nil {
			m.mu.Unlock()
			// The cluster admitted it first (Join): its place there goes
			// back, or its member and slot stayed for as long as this
			// node lived (TestJoinRefusedByNodeFreesItsPlace).
			if !req.takeover {
				m.leaveBus(bus, req)
			}
			return nil, nil, err
		}
		opened := false
		if r == nil {
			r = newRoom(m, req.Room)
			if sid != "" {
				r.sid = sid
			}
			if bus != nil {
				r.synced = make(chan struct{}) // before anyone joins it: see waitSynced
			}
			m.rooms[req.Room] = r
			m.log.Info("room created", "room", r.name, "sid", r.sid)
			m.notifyRoomStarted(r) // see events.go
			opened = true
		}
		m.mu.Unlock()
		if opened && bus != nil {
			bus.Opened(r)
		}
		if err := r.admit(req.Identity); err != nil { // before the costly peer connections
			m.leaveBus(bus, req)
			return nil, nil, err
		}

		p, err := newParticipant(m, r, req, peer)
		if err != nil {
			m.log.Error("creating participant", "err", err)
			m.leaveBus(bus, req)
			return nil, nil, protocol.Errorf(protocol.CodeInternal, "cannot create peer connections")
		}
		r.waitSynced() // the join result lists the other nodes' participants
		if bus != nil && !req.takeover && req.Identity != "" {
			r.dropReplaced(req.Identity, req.id) // remote.go
		}
		res, ok := r.add(p)
		if !ok { // the room closed meanwhile: make a new one
			p.loop.stop()
			p.closeConns()
			continue
		}
		m.wg.Add(1)
		if !req.takeover { // a takeover is the same participant: no second participant_joined
			m.notifyJoined(p)
		}
		return p, res, nil
	}
}

// waitRemoved waits until r, closed, is no longer this manager's room of
// its name: a Close running on another goroutine removes it right after
// marking it closed.
func (m *Manager) waitRemoved(r *Room) {
	for i := 0; ; i++ {
		m.mu.Lock()
		gone := m.rooms[r.name] != r
		m.mu.Unlock()
		if gone || i == 1000 {
			return
		}
		time.Sleep(time.Millisecond)
	}
}

// removeRoom forgets a closed room.
func (m *Manager) removeRoom(r *Room) {
	m.mu.Lock()
	if m.rooms[r.name] == r {
		delete(m.rooms, r.name)
	}
	m.mu.Unlock()
	m.log.Info("room closed", "room", r.name, "sid", r.sid)
	r.closeImports()
	m.notifyRoomClosed(r)
	if r.bus != nil {
		r.bus.Closed(r)
	}
}

// leaveBus frees the cluster place of a join that failed here.
func (m *Manager) leaveBus(bus Bus, req JoinRequest) {
	if bus == nil {
		return
	}
	identity := req.Identity
	if identity == "" {
		identity = req.id
	}
	bus.Leave(req.Room, Member{ID: req.id, Identity: identity, Node: bus.NodeID()})
}

func (m *Manager) limits() Limits {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.cfg.Limits
}

// Room returns a room by name, or nil.
func (m *Manager) Room(name string) *Room {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.rooms[name]
}

// RoomNames lists open rooms, sorted.
func (m *Manager) RoomNames() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	names := make([]string, 0, len(m.rooms))
	for n := range m.rooms {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// errShuttingDown refuses a join or resume on a node that drains or shuts
// down: 503, so that a client (or a load balancer) tries another node or
// again shortly; it answered 500 before, which reads as a server fault.
func errShuttingDown() error {
	return protocol.Errorf(protocol.CodeUnavailable, "server is shutting down (draining): join through another node")
}

// Draining reports whether Shutdown has begun.
func (m *Manager) Draining() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.draining
}

// Shutdown refuses new joins, sends `leave` to every participant, closes
// every room and waits (bounded by ctx) until all are gone.
func (m *Manager) Shutdown(ctx context.Context) error {
	m.shuttingDown.Store(true)
	m.mu.Lock()
	m.draining = true
	rooms := slices.Collect(maps.Values(m.rooms))
	m.mu.Unlock()
	for _, r := range rooms {
		r.Close(protocol.ReasonServerShutdown)
	}
	done := make(chan struct{})
	go func() {
		m.wg.Wait()
		// Every `leave` must be on the wire before Shutdown returns: a
		// process that exits right after would otherwise cut it off.
		m.mu.Lock()
		lingering := append([]<-chan struct{}(nil), m.lingering...)
		m.mu.Unlock()
		for _, l := range lingering {
			<-l
		}
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Linger makes Shutdown also wait until done is closed. A Peer's End calls
// it with the channel that closes once its `leave` is flushed and its socket
// closed, which happens after End returns.
func (m *Manager) Linger(done <-chan struct{}) {
	m.mu.Lock()
	defer m.mu.Unlock()
	kept := m.lingering[:0] // forget the ones already closed
	for _, l := range m.lingering {
		select {
		case <-l:
		default:
			kept = append(kept, l)
		}
	}
	m.lingering = append(kept, done)
}
