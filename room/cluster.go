package room

import (
	"context"
	"time"

	"github.com/starling-rtc/starling/protocol"
	"github.com/starling-rtc/starling/sfu"
)

// Bus connects a Manager to the other nodes of a cluster (package cluster
// implements it). A single node has none: every call site checks m.bus.
// Its methods never call back into the room synchronously, so rooms may
// call them with their lock held.
type Bus interface {
	// NodeID is this node's id.
	NodeID() string
	// Join reserves the member's place in the cluster-wide room (room
	// existence, max participants, identity replacement across nodes) and
	// returns the room's cluster-wide sid.
	Join(room string, m Member, maxParticipants int) (sid string, err error)
	// Leave frees a member's place (asynchronously).
	Leave(room string, m Member)
	// Emit publishes one of this node's room events, in order; it never blocks.
	Emit(room string, ev Event)
	// Control sends a command to the node of a remote participant.
	Control(node, room string, ev Event)
	// Opened and Closed tell the bus a local room instance exists or has
	// gone, so it follows (or stops following) the room's events.
	Opened(r *Room)
	Closed(r *Room)
	// Import returns a local media source for a track published on another
	// node (the relay, once per track and node); nil when it cannot.
	Import(r *Room, node string, t protocol.Track) (sfu.Source, error)
	// Unimport tells the origin node the import of a track has closed.
	Unimport(node, trackID string)
	// SetToken records a participant's new resume token hash (asynchronously).
	SetToken(room, participantID, tokenHash string)
	// StoreMember records, asynchronously, that what a participant's
	// member key keeps of it changed (name, metadata, withdrawn tracks:
	// what a takeover starts it with); current returns the member as it is
	// when the write is made (later changes are written by later calls).
	StoreMember(room, participantID string, current func() Member)
	// Command sends an admin command (mute, update) to the node of a remote
	// participant and waits for that node to take it: a *protocol.Error
	// when it cannot (409: the node is gone, the participant waits to
	// resume elsewhere; 503: no answer).
	Command(node, room string, ev Event) error
	// Takeover finds the member of room holding the resume token hash on
	// a node that is gone (or that releases it), and moves it to this node
	// with newTokenHash, the hash of the token the resume hands out; it
	// returns the member and the room's sid. ErrNoMember (wrapped): no
	// such member, or not movable; ErrStillHeld: try again later; any
	// other error: the room state is unavailable (try again too). It
	// returns by ctx's end.
	Takeover(ctx context.Context, room, tokenHash, newTokenHash string) (Member, string, error)
	// Settled tells node, which released a participant to this node while
	// draining, that the participant's new connections are up here: it
	// may stop serving the old ones (handover.go). Asynchronous.
	Settled(node, room, participantID string)
}

// Member is one participant as the cluster-wide room state records it.
type Member struct {
	ID       string `json:"id"`
	Identity string `json:"identity"`
	Node     string `json:"node"`
	// What another node needs to take the participant over when its node
	// dies (a resume through another node, takeover.go): the hash of its
	// current resume token and what it joined with.
	Token    string       `json:"token,omitempty"`
	Name     string       `json:"name,omitempty"`
	Metadata string       `json:"metadata,omitempty"`
	Auto     bool         `json:"auto,omitempty"`
	Perms    *Permissions `json:"perms,omitempty"`
	// JoinedAt (Unix ms) is when it first joined: a takeover keeps it, so
	// the participant's joinedAt (and its place in the room's lists, which
	// are sorted by it) does not change when its node dies.
	JoinedAt int64 `json:"joinedAt,omitempty"`
	// Released: the tracks its draining node released it with (set by
	// Bus.Takeover, not stored): published again, they keep their ids
	// (handover.go).
	Released []protocol.Track `json:"-"`
	// Withdrawn: the client track ids marked unpublished by request while
	// its SDP still sends them (withdrawn.go): stored with the member
	// (Bus.SetWithdrawn), so a takeover after its node died keeps them
	// unpublished too; a live node's handoff sends the current ones.
	Withdrawn []string `json:"withdrawn,omitempty"`
}

// Event types: what happened to a node's own participants (Emit), and the
// commands one node sends another about the latter's participants (Control).
const (
	EvJoined       = "joined"
	EvLeft         = "left"
	EvUpdated      = "updated"
	EvPublished    = "published"
	EvUnpublished  = "unpublished"
	EvTrackUpdated = "trackUpdated"
	EvData         = "data"
	EvSpeakers     = "speakers"
	EvMixPref      = "mixPref" // ParticipantID, Gain, Muted: the admin's setting of a voice in every node's mix

	CtlKick   = "kick"   // ParticipantID, Reason
	CtlMute   = "mute"   // ParticipantID, TrackID, Muted
	CtlUpdate = "update" // ParticipantID, Name, Metadata (nil = unchanged)
	// CtlData sends a server data message (Payload) to the receiving
	// node's participants of the room, those in To (all when empty).
	CtlData = "data"
	// CtlCloseRoom closes the receiving node's part of the room (Reason).
	CtlCloseRoom = "closeRoom"
	// CtlDropRemote removes the receiving node's stub of another node's
	// participant now (ParticipantID, Reason): its node is dead, so the
	// participant's leave (a kick) cannot come from there.
	CtlDropRemote = "dropRemote"
)

// Event is a room change carried between nodes. Node and Seq are set by
// the emitting room: Seq counts that node's events of that room, so a
// receiver that sees a gap asks for a snapshot.
type Event struct {
	Node          string                `json:"node"`
	Seq           uint64                `json:"seq"`
	Type          string                `json:"type"`
	Participant   *protocol.Participant `json:"participant,omitempty"`
	Identity      string                `json:"identity,omitempty"`
	Track         *protocol.Track       `json:"track,omitempty"`
	ParticipantID string                `json:"participantId,omitempty"`
	TrackID       string                `json:"trackId,omitempty"`
	Reason        string                `json:"reason,omitempty"`
	Payload       string                `json:"payload,omitempty"`
	To            []string              `json:"to,omitempty"`
	Muted         bool                  `json:"muted,omitempty"`
	Name          *string               `json:"name,omitempty"`
	Metadata      *string               `json:"metadata,omitempty"`
	Speakers      []protocol.Speaker    `json:"speakers,omitempty"`
	Gain          *float64              `json:"gain,omitempty"`
}

// RemoteParticipant is a participant of another node in a snapshot.
type RemoteParticipant struct {
	Info     protocol.Participant `json:"info"`
	Identity string               `json:"identity"`
}

// NodeSnapshot is one node's part of a room: its participants and the
// sequence number of its last event.
type NodeSnapshot struct {
	Node         string              `json:"node"`
	Seq          uint64              `json:"seq"`
	Participants []RemoteParticipant `json:"participants"`
	// Speakers is the node's active speakers as last sent: they are sent
	// on change only, so a node that gets a part of the room later learns
	// them here (its mix ranks remote voices by them).
	Speakers []protocol.Speaker `json:"speakers,omitempty"`
	// Moved lists the participants the node released to another node
	// they resume through (Release) within the resume window: their
	// absence from Participants is no leave. The node taking one over
	// writes its member and announces it (its stubs move there); a
	// snapshot that comes between the release and that must not tell
	// anyone it left (issue 14: a drain is invisible to the others).
	Moved []string `json:"moved,omitempty"`
}

// SetBus makes the Manager a cluster node; call it before the first Join.
func (m *Manager) SetBus(b Bus) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.bus = b
}

// clusterBus returns the bus, or nil on a single node.
func (m *Manager) clusterBus() Bus {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.bus
}

// emit publishes ev for a local participant's change; r.mu must be held so
// events leave in the order the room applied them.
func (r *Room) emit(ev Event) {
	if r.bus == nil {
		return
	}
	r.seq++
	ev.Seq = r.seq
	ev.Node = r.bus.NodeID()
	r.bus.Emit(r.name, ev)
}

// member is p's entry in the cluster-wide room state.
func (p *Participant) member() Member {
	node := p.node
	if node == "" && p.room.bus != nil {
		node = p.room.bus.NodeID()
	}
	return Member{ID: p.id, Identity: p.identity, Node: node}
}

// syncWait bounds how long a join into a room just opened on this node
// waits for the other nodes' parts of it. Their snapshots take a bus round
// trip or two; a node that does not answer (dead, its members kept for
// the resume window) costs its request's timeout (3 s); past syncWait the
// join goes on, and what arrives later reaches the joiner as
// participantJoined. 5 s: a loaded machine (CI under -race) may take
// seconds to read the room's state, and a join that waits is still a join.
const syncWait = 5 * time.Second

// Synced tells the room that the bus has fetched the other nodes' parts
// of it (or given up): joins waiting in waitSynced go on. Idempotent.
func (r *Room) Synced() {
	if r.synced != nil {
		r.syncedOnce.Do(func() { close(r.synced) })
	}
}

// waitSynced holds a join into a room this node has just opened until the
// other nodes' participants are known here (at most syncWait), so that
// the join result lists "the others already in the room" (PROTOCOL.md)
// on every node, and the joiner is not told by participantJoined that
// they just came.
func (r *Room) waitSynced() {
	if r.synced == nil {
		return
	}
	select {
	case <-r.synced:
	case <-time.After(syncWait):
		r.m.log.Warn("joining before the other nodes' parts of the room are known", "room", r.name, "waited", syncWait)
	}
}
