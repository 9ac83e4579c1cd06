package recorder

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"
)

// A cluster records a room once: a room recording (started through the
// API, or automatically) first claims the room in the cluster's shared
// store (Cluster.ClaimRecording, a compare-and-set), so of simultaneous
// starts on several nodes exactly one wins and the others answer 409 with
// the winner. A claim names its recording and node; it is released when
// the recording ends. A claim whose node no longer runs that recording
// (the node died, or ended without releasing it) is stale: the next start
// replaces it at its revision, again by compare-and-set. A claim of a
// recording stopped through the API stays, marked stopped, for the rest of
// that room instance (sid): no node auto-records the room again, as on a
// single node; an API start replaces it.

// claim is the value of a room's recording claim.
type claim struct {
	ID      string `json:"id"`
	Node    string `json:"node"`
	SID     string `json:"sid"`
	Auto    bool   `json:"auto,omitempty"`
	Stopped bool   `json:"stopped,omitempty"`
}

// methodHeld asks a node (a forwarded request, Path = the recording id)
// whether it runs, or is starting, that recording: 200 with its Info, or
// 404.
const methodHeld = "HELD"

// claimAttempts bounds the compare-and-set rounds of one start.
const claimAttempts = 20

// errAutoStopped: the room's recording was stopped through the API in this
// room instance; auto-record leaves it.
var errAutoStopped = errors.New("recording stopped through the API")

// claimRoom makes this node the room's recorder for recording id, or
// fails with ErrAlreadyRecording and the recording that holds the room.
func (m *Manager) claimRoom(c Cluster, roomName, sid, id string, auto bool) (Info, error) {
	mine, _ := json.Marshal(claim{ID: id, Node: c.NodeID(), SID: sid, Auto: auto})
	var rev uint64
	for i := 0; i < claimAttempts; i++ {
		cur, curRev, won, err := c.ClaimRecording(roomName, mine, rev)
		if err != nil {
			return Info{}, err
		}
		if won {
			return Info{}, nil
		}
		if curRev == 0 { // released meanwhile
			rev = 0
			continue
		}
		var other claim
		_ = json.Unmarshal(cur, &other)
		if other.ID == id && other.Node == c.NodeID() {
			return Info{}, nil // a write that timed out had landed
		}
		if other.SID == sid && other.Stopped {
			if auto {
				return Info{}, errAutoStopped
			}
		} else if in, ok := m.held(c, other); ok {
			return in, fmt.Errorf("%w: recording %s on node %s", ErrAlreadyRecording, in.ID, in.Node)
		}
		rev = curRev // stale or stopped: replace it at the revision seen
		time.Sleep(time.Duration(i) * time.Millisecond)
	}
	return Info{}, fmt.Errorf("%w: the room's recording claim keeps changing", ErrAlreadyRecording)
}

// held is the recording of a claim when its node runs (or starts) it.
func (m *Manager) held(c Cluster, cl claim) (Info, bool) {
	if cl.ID == "" || cl.Node == "" {
		return Info{}, false
	}
	if cl.Node == c.NodeID() {
		return m.heldHere(cl.ID)
	}
	rep, err := c.Forward(cl.Node, ForwardRequest{Method: methodHeld, Path: cl.ID})
	if err != nil || rep.Status != http.StatusOK {
		// No answer: the node is gone (or cut off; the claim is then taken
		// over, and its recording, if it runs, is a second one).
		return Info{}, false
	}
	var in Info
	if json.Unmarshal(rep.Body, &in) != nil {
		return Info{}, false
	}
	return in, true
}

// heldHere is this node's recording id while it holds its claim: from
// its start until its claim is released.
func (m *Manager) heldHere(id string) (Info, bool) {
	m.mu.Lock()
	if in, ok := m.pending[id]; ok {
		m.mu.Unlock()
		return in, true
	}
	r := m.active[id]
	if r == nil {
		r = m.releasing[id] // ended, its claim not released yet
	}
	m.mu.Unlock()
	if r == nil {
		return Info{}, false
	}
	return m.info(r), true
}

// serveHeld answers methodHeld.
func (m *Manager) serveHeld(id string) ForwardReply {
	in, ok := m.heldHere(id)
	if !ok {
		return ForwardReply{Status: http.StatusNotFound}
	}
	data, _ := json.Marshal(in)
	return ForwardReply{Status: http.StatusOK, Body: data}
}

// releaseClaim drops the room's claim of recording r when it ended; a
// recording stopped through the API leaves it marked stopped.
func (m *Manager) releaseClaim(c Cluster, roomName, id string, stopped bool) {
	for i := 0; i < claimAttempts; i++ {
		cur, rev, err := c.RecordingClaim(roomName)
		if err != nil || rev == 0 {
			return
		}
		var cl claim
		if json.Unmarshal(cur, &cl) != nil || cl.ID != id || cl.Node != c.NodeID() {
			return // taken over meanwhile
		}
		if !stopped {
			if c.DropRecordingClaim(roomName, rev) == nil {
				return
			}
			continue
		}
		cl.Stopped = true
		data, _ := json.Marshal(cl)
		if _, _, won, err := c.ClaimRecording(roomName, data, rev); won || err != nil {
			return
		}
	}
}

// autoRecordAll starts the auto recording of every local room that needs
// one (another node died: it may have held one).
func (m *Manager) autoRecordAll() {
	if m.rooms == nil || len(m.cfg.AutoRecord) == 0 {
		return
	}
	for _, name := range m.rooms.RoomNames() {
		rm := m.rooms.Room(name)
		if rm == nil || !m.autoMatch(name) || len(rm.ObservedTracks()) == 0 {
			continue
		}
		m.mu.Lock()
		skip := m.closed || m.noAuto[rm.SID()]
		m.mu.Unlock()
		if !skip {
			m.autoStart(name)
		}
	}
}

// NodeGone is called when another node of the cluster died or left: this
// node takes over the auto recordings it held, where this node has a part
// of the room (one node wins each room).
func (m *Manager) NodeGone(string) { m.autoRecordAll() }

// autoStart starts a room's auto recording (off the caller's goroutine);
// in a cluster only the node that claims the room records it.
func (m *Manager) autoStart(roomName string) {
	go func() {
		_, err := m.start(roomName, "", true, m.cfg.AutoMix)
		if err != nil && !errors.Is(err, ErrAlreadyRecording) && !errors.Is(err, errAutoStopped) && !errors.Is(err, ErrClosed) {
			m.log.Error("auto-record", "room", roomName, "err", err)
		}
	}()
}
