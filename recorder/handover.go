package recorder

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
)

// A cluster node that drains (SIGTERM) hands its room recordings over
// before it stops, so a recording goes on while the room does: each one
// stops here (finished, its files final) with the room's claim left in
// place, and another node with a part of the room is asked to record the
// room on. That node claims the room by compare-and-set at the claim's
// revision (the draining node answers that it no longer holds it) and
// records a new recording that names the one it continues
// (Info.Continues), as after a takeover: never two at once, a gap of one
// stop and one start. A recording no node takes ends as on a shutdown.

// methodContinue asks a node (a forwarded request, Path = the room) to
// record a room whose recording a draining node handed over.
const methodContinue = "CONTINUE"

// handover is the body of methodContinue.
type handover struct {
	ID   string `json:"id"` // the recording handed over
	Auto bool   `json:"auto,omitempty"`
	Mix  bool   `json:"mix,omitempty"`
}

// HandOver moves this node's room recordings to other nodes of their
// rooms (a cluster node's drain, before it shuts down) and returns how
// many went over. ctx bounds the whole.
func (m *Manager) HandOver(ctx context.Context) int {
	c := m.cluster()
	if c == nil {
		return 0
	}
	m.mu.Lock()
	var recs []*recording
	for _, r := range m.active {
		if r.claimed && !r.lost && !r.stopped {
			recs = append(recs, r)
		}
	}
	m.mu.Unlock()
	moved := 0
	for _, r := range recs {
		if ctx.Err() != nil {
			break
		}
		if m.handOver(ctx, c, r) {
			moved++
		}
	}
	return moved
}

// handOver stops r, keeping its claim, and asks the room's other nodes in
// turn to record the room on.
func (m *Manager) handOver(ctx context.Context, c Cluster, r *recording) bool {
	roomName := r.rr.Room()
	nodes, err := c.RoomNodes(roomName)
	if err != nil {
		// The room state does not answer: offer the room to every live
		// node; one without a part of it refuses (404) and the next is
		// asked. Before, the recording ended with this node.
		nodes = c.OtherNodes()
	}
	if len(nodes) == 0 {
		return false // nobody else in the room: it ends with this node
	}
	m.mu.Lock()
	if _, ok := m.active[r.rr.ID()]; !ok || r.stopped {
		m.mu.Unlock()
		return false
	}
	r.lost = true // its claim stays for the recording that continues it
	m.mu.Unlock()
	r.rr.Stop()
	m.reap(r) // its renewals are over: the claim is as it was last renewed
	body, _ := json.Marshal(handover{ID: r.rr.ID(), Auto: r.auto, Mix: r.mix})
	for _, node := range nodes {
		if ctx.Err() != nil {
			break
		}
		rep, err := c.Forward(node, ForwardRequest{Method: methodContinue, Path: roomName, Body: body})
		if err != nil || rep.Status != http.StatusCreated {
			m.log.Warn("recording not handed over to a node", "room", roomName, "recording", r.rr.ID(), "node", node, "status", rep.Status, "err", err)
			continue
		}
		var in Info
		_ = json.Unmarshal(rep.Body, &in)
		m.log.Info("recording handed over", "room", roomName, "recording", r.rr.ID(), "node", node, "new", in.ID, "continues", in.Continues)
		return true
	}
	m.releaseClaim(c, roomName, r.rr.ID(), false) // nobody took it: free the room
	return false
}

// serveContinue records a room handed over by a draining node.
func (m *Manager) serveContinue(roomName string, body []byte) ForwardReply {
	var h handover
	if json.Unmarshal(body, &h) != nil || h.ID == "" {
		return ForwardReply{Status: http.StatusBadRequest}
	}
	in, err := m.start(roomName, "", h.Auto, h.Mix)
	if err == nil {
		data, _ := json.Marshal(in)
		return ForwardReply{Status: http.StatusCreated, Body: data}
	}
	status := http.StatusInternalServerError
	switch {
	case errors.Is(err, ErrRoomNotFound):
		status = http.StatusNotFound
	case errors.Is(err, ErrAlreadyRecording):
		status = http.StatusConflict
	case errors.Is(err, ErrClosed), errors.Is(err, ErrCutOff):
		status = http.StatusServiceUnavailable
	}
	m.log.Warn("cannot record a room handed over", "room", roomName, "from", h.ID, "err", err)
	data, _ := json.Marshal(map[string]string{"error": err.Error()})
	return ForwardReply{Status: status, Body: data}
}
