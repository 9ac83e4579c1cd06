package recorder

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"sync"
)

// In a cluster, a room recording runs on ONE node and records every track
// of the room (the others' are imported, room.AcquireRemoteMedia): the
// node that received the start request when it has a part of the room
// (a participant there), else the first node that has one, to which the
// request is forwarded over the bus. The files land on that node's disk;
// every recording says its node (Info.Node). Any node answers the control
// API for every recording: a request for a recording it does not run is
// forwarded to the other nodes, and a room's list gathers every node's.
// Events (webhooks) come from the node that runs the recording: once.

// Cluster is what the recorder needs of a cluster (server wiring); nil on
// a single node.
type Cluster interface {
	// NodeID is this node's id.
	NodeID() string
	// RoomNodes lists the other nodes with a part of the room now; err
	// when the cluster's room state does not answer (the room may exist:
	// a start answers 503, try again, not 404).
	RoomNodes(room string) ([]string, error)
	// OtherNodes lists every other live node.
	OtherNodes() []string
	// Forward runs a recording API request on another node's recorder
	// (ServeForwarded there).
	Forward(node string, req ForwardRequest) (ForwardReply, error)
	// ClaimRecording writes the room's recording claim in the cluster's
	// shared store by compare-and-set (claim.go): it creates it when rev
	// is 0, else replaces the claim at revision rev. When another write
	// got there first, won is false and cur, curRev are the claim now
	// (curRev 0: none).
	ClaimRecording(room string, value []byte, rev uint64) (cur []byte, curRev uint64, won bool, err error)
	// RecordingClaim reads the room's claim (rev 0: none).
	RecordingClaim(room string) (value []byte, rev uint64, err error)
	// DropRecordingClaim deletes the room's claim if still at rev.
	DropRecordingClaim(room string, rev uint64) error
	// RenewRecordingClaim writes the same claim value again at revision
	// rev (lease.go), once, within ctx: held is true with the new
	// revision, false when the claim is another's or gone now.
	RenewRecordingClaim(ctx context.Context, room string, value []byte, rev uint64) (newRev uint64, held bool, err error)
	// HearsMajority reports whether this node hears a majority of the
	// cluster's nodes: one that does not may be declared dead by the
	// others, so it stops recording rooms (lease.go).
	HearsMajority() bool
	// NodeDead reports whether another node is known dead: it can no
	// longer record (it would have stopped, not hearing a majority), so
	// its claims may be taken at once.
	NodeDead(ctx context.Context, node string) bool
}

// ForwardRequest is a recording API request sent to another node.
type ForwardRequest struct {
	Method string `json:"method"`
	Path   string `json:"path"`
	Body   []byte `json:"body,omitempty"`
}

// ForwardReply is its answer.
type ForwardReply struct {
	Status int    `json:"status"`
	Body   []byte `json:"body,omitempty"`
}

// forwardedHeader marks a request another node forwarded: it is answered
// from this node's recordings alone, never forwarded again.
const forwardedHeader = "X-Starling-Recording-Forwarded"

type clusterState struct {
	mu  sync.Mutex
	c   Cluster
	mux http.Handler // the routes without authentication, for forwarded requests
}

// SetCluster makes the recorder cluster-wide (call before serving).
func (m *Manager) SetCluster(c Cluster) {
	m.cl.mu.Lock()
	defer m.cl.mu.Unlock()
	m.cl.c = c
	m.cl.mux = m.Handler()
}

func (m *Manager) cluster() Cluster {
	m.cl.mu.Lock()
	defer m.cl.mu.Unlock()
	return m.cl.c
}

// nodeID is this node's id in a cluster, "" on a single node.
func (m *Manager) nodeID() string {
	if c := m.cluster(); c != nil {
		return c.NodeID()
	}
	return ""
}

// ServeForwarded answers a request another node forwarded, from this
// node's recordings alone (the other node checked the caller's rights).
func (m *Manager) ServeForwarded(req ForwardRequest) ForwardReply {
	m.cl.mu.Lock()
	mux := m.cl.mux
	m.cl.mu.Unlock()
	if mux == nil {
		return ForwardReply{Status: http.StatusServiceUnavailable}
	}
	switch req.Method {
	case methodHeld:
		return m.serveHeld(req.Path)
	case methodContinue:
		return m.serveContinue(req.Path, req.Body) // handover.go
	}
	r, err := http.NewRequest(req.Method, req.Path, bytes.NewReader(req.Body))
	if err != nil {
		return ForwardReply{Status: http.StatusBadRequest}
	}
	r.Header.Set(forwardedHeader, "1")
	r.RemoteAddr = "127.0.0.1:0"
	w := &bufferWriter{h: http.Header{}, status: http.StatusOK}
	mux.ServeHTTP(w, r)
	return ForwardReply{Status: w.status, Body: w.buf.Bytes()}
}

type bufferWriter struct {
	h      http.Header
	status int
	buf    bytes.Buffer
}

func (w *bufferWriter) Header() http.Header         { return w.h }
func (w *bufferWriter) WriteHeader(code int)        { w.status = code }
func (w *bufferWriter) Write(p []byte) (int, error) { return w.buf.Write(p) }

// peers is the cluster to forward r to, nil when r was forwarded already
// or on a single node.
func (m *Manager) peers(r *http.Request) Cluster {
	if r.Header.Get(forwardedHeader) != "" {
		return nil
	}
	return m.cluster()
}

func forwardOf(r *http.Request, body []byte) ForwardRequest {
	return ForwardRequest{Method: r.Method, Path: r.URL.EscapedPath(), Body: body}
}

// forwardAll sends req to every node at once and returns their answers.
func forwardAll(c Cluster, nodes []string, req ForwardRequest) []ForwardReply {
	out := make([]ForwardReply, len(nodes))
	var wg sync.WaitGroup
	for i, node := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rep, err := c.Forward(node, req)
			if err != nil {
				rep = ForwardReply{Status: http.StatusBadGateway}
			}
			out[i] = rep
		}()
	}
	wg.Wait()
	return out
}

// nodesFor lists the nodes to ask about a room's recordings: every other
// live node (heartbeats) and those with a part of the room (the room
// state), in case a heartbeat was not heard yet. Without the room state
// (the store does not answer) the live nodes are asked: a recording runs
// on a live node.
func nodesFor(c Cluster, room string) []string {
	out := c.OtherNodes()
	nodes, _ := c.RoomNodes(room)
	for _, n := range nodes {
		if !slices.Contains(out, n) {
			out = append(out, n)
		}
	}
	return out
}

// forwardFirst writes the first answer of another node that knows the
// recording (not 404), and reports whether there was one, and which nodes
// did not answer at all.
func forwardFirst(w http.ResponseWriter, c Cluster, room string, req ForwardRequest) (answered bool, silent []string) {
	nodes := nodesFor(c, room)
	for i, rep := range forwardAll(c, nodes, req) {
		switch rep.Status {
		case http.StatusNotFound:
		case http.StatusBadGateway, 0:
			silent = append(silent, nodes[i])
		default:
			writeRaw(w, rep)
			return true, nil
		}
	}
	return false, silent
}

func writeRaw(w http.ResponseWriter, rep ForwardReply) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(rep.Status)
	_, _ = w.Write(rep.Body)
}

// gather adds the other nodes' recordings of a list answer to local.
func gather(c Cluster, room string, req ForwardRequest, local []Info) []Info {
	for _, rep := range forwardAll(c, nodesFor(c, room), req) {
		if rep.Status != http.StatusOK {
			continue
		}
		var body struct {
			Recordings []Info `json:"recordings"`
		}
		if json.Unmarshal(rep.Body, &body) == nil {
			local = append(local, body.Recordings...)
		}
	}
	sort.SliceStable(local, func(i, j int) bool { return local[i].StartedAt.Before(local[j].StartedAt) })
	return local
}

// trackElsewhere: a track recording was asked of a node where the track
// is another node's (a cluster); the HTTP API forwards it there.
type trackElsewhere struct{ track, node string }

func (e *trackElsewhere) Error() string {
	return fmt.Sprintf("track %q is published on node %s: its recording runs there", e.track, e.node)
}

func (e *trackElsewhere) Unwrap() error { return ErrTrackNotFound }
