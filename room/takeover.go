package room

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"

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

func newResumeToken() string { return newID("RS_") + newID("") }

// hashToken is what the cluster state keeps of a resume token.
func hashToken(token string) string {
	h := sha256.Sum256([]byte(token))
	return hex.EncodeToString(h[:])
}

// takeover resumes a participant of a dead node here; errResume when there
// is no cluster or no such participant.
func (m *Manager) takeover(roomName, token string, peer Peer) (*Participant, *protocol.JoinResult, error) {
	bus := m.clusterBus()
	if bus == nil {
		return nil, nil, errResume()
	}
	mem, sid, err := bus.Takeover(roomName, hashToken(token))
	if errors.Is(err, ErrStillHeld) {
		// The participant's node is alive, or not yet known dead, and has
		// not let go of it: the client's socket drop is not seen there yet,
		// or the node is dying. A moment later the node has either released
		// it or is known dead, so the client is told to try again (5xx)
		// rather than that its session is gone (404).
		m.log.Info("resume through this node deferred", "room", roomName, "err", err)
		return nil, nil, protocol.Errorf(protocol.CodeUnavailable, "resume: the participant's node has not released it yet; try again")
	}
	if err != nil {
		m.log.Info("resume through this node refused", "room", roomName, "err", err)
		return nil, nil, errResume()
	}
	req := JoinRequest{
		Room: roomName, Name: mem.Name, Metadata: mem.Metadata, Identity: mem.Identity,
		AutoSubscribe: mem.Auto, Permissions: mem.Perms,
		id: mem.ID, token: newResumeToken(), takeover: true,
	}
	if r := m.Room(roomName); r != nil {
		r.dropStub(mem.ID) // the old node's view of it: its tracks died with that node
	}
	p, res, err := m.joinLocal(req, peer, sid, bus)
	if err != nil {
		return nil, nil, err
	}
	bus.SetToken(roomName, p.id, hashToken(p.resumeToken))
	res.NewConnections = true
	p.log.Info("resumed through this node after its node died", "from", mem.Node)
	return p, res, nil
}

// dropStub removes a remote participant's stub without telling anyone it
// left (it is about to be here, or on another node): only its tracks end.
func (r *Room) dropStub(id string) {
	r.mu.Lock()
	p := r.remotes[id]
	r.mu.Unlock()
	if p == nil {
		return
	}
	p.mu.Lock()
	tracks := make([]*Track, 0, len(p.tracks))
	for _, t := range p.tracks {
		tracks = append(tracks, t)
	}
	p.closed = true
	p.mu.Unlock()
	for _, t := range tracks {
		r.unpublish(t)
		t.closeImport()
	}
	r.mu.Lock()
	if r.remotes[id] == p {
		delete(r.remotes, id)
	}
	r.mu.Unlock()
}
