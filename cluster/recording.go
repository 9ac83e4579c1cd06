package cluster

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
)

// Recordings across nodes: a node's recorder forwards the control API
// requests it cannot answer itself (a room without a part here, another
// node's recording) to the other nodes' recorders over the bus, request/
// reply on starling.node.<id>.rec. The bus is authenticated, and the first
// node checked the caller's rights. See recorder/cluster.go.

// RecordingRequest is a recording API request forwarded to another node.
type RecordingRequest struct {
	Method string `json:"method"`
	Path   string `json:"path"`
	Body   []byte `json:"body,omitempty"`
}

// RecordingReply is its answer.
type RecordingReply struct {
	Status int    `json:"status"`
	Body   []byte `json:"body,omitempty"`
}

// recordingTimeout bounds a forwarded request: stopping a recording waits
// for its files to be final.
const recordingTimeout = 20 * time.Second

// ServeRecordings answers the other nodes' forwarded recording requests
// with serve (the local recorder); call it once, after Start.
func (n *Node) ServeRecordings(serve func(RecordingRequest) RecordingReply) error {
	_, err := n.bus.nc.Subscribe(nodeSubject(n.id, "rec"), func(m *nats.Msg) {
		var req RecordingRequest
		if json.Unmarshal(m.Data, &req) != nil {
			data, _ := json.Marshal(RecordingReply{Status: 400})
			_ = m.Respond(data)
			return
		}
		n.wg.Add(1)
		go func() { // a stop waits for files: not on the bus's goroutine
			defer n.wg.Done()
			data, _ := json.Marshal(serve(req))
			_ = m.Respond(data)
		}()
	})
	return err
}

// ForwardRecording runs a recording API request on another node.
func (n *Node) ForwardRecording(node string, req RecordingRequest) (RecordingReply, error) {
	data, _ := json.Marshal(req)
	msg, err := n.bus.nc.Request(nodeSubject(node, "rec"), data, recordingTimeout)
	if err != nil {
		return RecordingReply{}, fmt.Errorf("recording request to %s: %w", node, err)
	}
	var rep RecordingReply
	if err := json.Unmarshal(msg.Data, &rep); err != nil {
		return RecordingReply{}, err
	}
	return rep, nil
}

// RoomNodes lists the other nodes that have a part of the room now.
func (n *Node) RoomNodes(name string) []string {
	st, _, ok := n.get(name)
	if !ok {
		return nil
	}
	var out []string
	for _, node := range nodesOf(st) {
		if node != n.id {
			out = append(out, node)
		}
	}
	return out
}

// OtherNodes lists the other live nodes.
func (n *Node) OtherNodes() []string {
	var out []string
	for _, in := range n.reg.list() {
		if in.ID != n.id {
			out = append(out, in.ID)
		}
	}
	return out
}
