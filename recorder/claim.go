package recorder

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
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
	Mix     bool   `json:"mix,omitempty"`
	Stopped bool   `json:"stopped,omitempty"`
}

// A claim is a lease (lease.go): its node renews it while recording and
// stops recording when it could not for claimLease, or as soon as it
// hears fewer than a majority of the cluster's nodes; another node
// replaces a claim whose node does not answer only after it saw the claim
// unchanged for takeoverWait, longer than the lease, or once that node is
// known dead (a majority has not heard it for longer than a cut-off node
// takes to stop: cluster/presence.go). So a node cut off from the bus
// (alive, not answering) has stopped before the room is recorded
// elsewhere: one recording of the room at any time.

// methodHeld asks a node (a forwarded request, Path = the recording id)
// whether it runs, or is starting, that recording: 200 with its Info, or
// 404.
const methodHeld = "HELD"

// claimAttempts bounds the compare-and-set rounds of one start.
const claimAttempts = 20

// errAutoStopped: the room's recording was stopped through the API in this
// room instance; auto-record leaves it.
var errAutoStopped = errors.New("recording stopped through the API")

// claimWon is a won claim: its revision, when its write was sent (the
// lease runs from then) and the recording it continues, if any.
type claimWon struct {
	value     []byte
	rev       uint64
	at        time.Time
	continues string
}

// claimRoom makes this node the room's recorder for recording id, or
// fails with ErrAlreadyRecording and the recording that holds the room.
func (m *Manager) claimRoom(c Cluster, roomName, sid, id string, auto, mix bool) (claimWon, Info, error) {
	mine, _ := json.Marshal(claim{ID: id, Node: c.NodeID(), SID: sid, Auto: auto, Mix: mix})
	var rev uint64
	var continues string
	giveUp := time.Now().Add(2 * takeoverWait) // a start waits at most this long for leases
	for i := 0; i < claimAttempts; i++ {
		at := time.Now()
		cur, curRev, won, err := c.ClaimRecording(roomName, mine, rev)
		if err != nil {
			return claimWon{}, Info{}, err
		}
		if won {
			return claimWon{value: mine, rev: curRev, at: at, continues: continues}, Info{}, nil
		}
		if curRev == 0 { // released meanwhile
			rev, continues = 0, ""
			continue
		}
		var other claim
		_ = json.Unmarshal(cur, &other)
		if other.ID == id && other.Node == c.NodeID() {
			// A write of this call that timed out had landed (it retries
			// inside): its lease runs from before the call.
			return claimWon{value: mine, rev: curRev, at: at, continues: continues}, Info{}, nil
		}
		switch {
		case other.Stopped: // no recording runs
			if auto && other.SID == sid {
				return claimWon{}, Info{}, errAutoStopped
			}
		case other.Node == c.NodeID():
			// This node's own claim: held or stale, this node knows.
			if in, ok := m.heldHere(other.ID); ok {
				return claimWon{}, in, fmt.Errorf("%w: recording %s on node %s", ErrAlreadyRecording, in.ID, in.Node)
			}
		default:
			// A node not heard lately is not asked: a request to a node
			// that lost its host waits out its timeout (20 s), and its
			// answer could only let this node take the room sooner.
			var in Info
			answered := false
			if slices.Contains(c.OtherNodes(), other.Node) {
				in, answered = m.held(c, other)
			}
			if answered && in.ID != "" {
				return claimWon{}, in, fmt.Errorf("%w: recording %s on node %s", ErrAlreadyRecording, in.ID, in.Node)
			}
			if !answered {
				// Its node does not answer: dead, or cut off and still
				// recording until its lease ends. Wait that out.
				if time.Now().After(giveUp) {
					in := Info{ID: other.ID, Kind: "room", Room: roomName, Status: "recording", Node: other.Node, Files: []string{}}
					return claimWon{}, in, fmt.Errorf("%w: recording %s on node %s, which does not answer but renews its claim", ErrAlreadyRecording, other.ID, other.Node)
				}
				changed, dead, err := m.waitLease(c, roomName, curRev, other.Node)
				if err != nil {
					return claimWon{}, Info{}, err
				}
				if changed {
					rev, continues = 0, "" // read it again (a create fails with the claim now)
					continue
				}
				if dead {
					m.log.Info("the room's recording node is known dead: taking its claim at once", "room", roomName, "node", other.Node, "recording", other.ID)
				}
			}
		}
		if other.SID == sid && !other.Stopped {
			continues = other.ID // its recording ended unfinished: this one goes on
		} else {
			continues = ""
		}
		rev = curRev // stale or stopped: replace it at the revision seen
		time.Sleep(time.Duration(i) * time.Millisecond)
	}
	return claimWon{}, Info{}, fmt.Errorf("%w: the room's recording claim keeps changing", ErrAlreadyRecording)
}

// held asks a claim's node whether it runs (or starts) the claim's
// recording: answered is false when the node did not answer at all.
func (m *Manager) held(c Cluster, cl claim) (in Info, answered bool) {
	if cl.ID == "" || cl.Node == "" {
		return Info{}, true
	}
	rep, err := c.Forward(cl.Node, ForwardRequest{Method: methodHeld, Path: cl.ID})
	if err != nil {
		return Info{}, false
	}
	switch rep.Status {
	case http.StatusOK:
		if json.Unmarshal(rep.Body, &in) != nil {
			return Info{}, false
		}
		return in, true
	case http.StatusNotFound:
		return Info{}, true // the node says it does not record it
	}
	return Info{}, false
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

// autoStart starts a room's auto recording (off the caller's goroutine);
// in a cluster only the node that claims the room records it. A start
// that failed for a reason that passes is tried again (startRetrying)
// while the room instance still wants its auto recording: a recording
// whose node died is otherwise taken over by no node when the store
// elected its new leader later than a claim waits (ClaimRecording's 8 s,
// seen under load in TestAutoRecordTakeover), and the room goes
// unrecorded for good. One such loop per room instance: a call while it
// runs has it start once more when it ends (a node gone just after the
// loop heard it recording the room).
func (m *Manager) autoStart(roomName, sid string) {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return
	}
	if _, running := m.autoTrying[sid]; running {
		m.autoTrying[sid] = true // again
		m.mu.Unlock()
		return
	}
	m.autoTrying[sid] = false
	m.mu.Unlock()
	go func() {
		wants := func() bool {
			if rm := m.rooms.Room(roomName); rm == nil || rm.SID() != sid || len(rm.ObservedTracks()) == 0 {
				return false
			}
			m.mu.Lock()
			defer m.mu.Unlock()
			return !m.noAuto[sid]
		}
		for {
			m.startRetrying(roomName, sid, wants, func() (Info, error) { return m.start(roomName, "", true, m.cfg.AutoMix) })
			m.mu.Lock()
			again := m.autoTrying[sid] && !m.closed
			if !again {
				delete(m.autoTrying, sid)
				m.mu.Unlock()
				return
			}
			m.autoTrying[sid] = false
			m.mu.Unlock()
		}
	}()
}

// retryFirst and retryMax bound the backoff of startRetrying.
const (
	retryFirst = 500 * time.Millisecond
	retryMax   = 8 * time.Second
)

// startRetrying runs start until it succeeds or fails for good: someone
// records the room (ErrAlreadyRecording), the room's recording was
// stopped through the API, the room is gone, or the recorder closed.
// Other failures (the cluster's store out of reach or electing a leader,
// this node hearing too few nodes for a moment) are tried again with
// backoff while wants() holds, in a cluster; a single node has none of
// them, and its errors (the disk) are logged once.
func (m *Manager) startRetrying(roomName, sid string, wants func() bool, start func() (Info, error)) {
	wait := retryFirst
	for {
		in, err := start()
		switch {
		case err == nil:
			if in.Continues != "" {
				m.log.Info("recording taken over", "room", roomName, "recording", in.ID, "continues", in.Continues)
			}
			return
		case errors.Is(err, ErrAlreadyRecording), errors.Is(err, errAutoStopped), errors.Is(err, ErrClosed), errors.Is(err, ErrRoomNotFound):
			return
		case m.cluster() == nil:
			m.log.Error("auto-record", "room", roomName, "err", err)
			return
		}
		m.log.Warn("room recording not started: trying again", "room", roomName, "sid", sid, "in", wait, "err", err)
		select {
		case <-m.composeCtx.Done():
			return
		case <-time.After(wait):
		}
		wait = min(2*wait, retryMax)
		if !wants() {
			return
		}
	}
}
