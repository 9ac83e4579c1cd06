package cluster

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
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
		if !n.spawn(func() { // a stop waits for files: not on the bus's goroutine
			data, _ := json.Marshal(serve(req))
			_ = m.Respond(data)
		}) {
			data, _ := json.Marshal(RecordingReply{Status: 503}) // this node is closing: ask again
			_ = m.Respond(data)
		}
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

// RoomNodes lists the other nodes that have a part of the room now; err is
// ErrStoreUnavailable when the room state store did not answer, so that a
// recording request through a node without a part of the room answers 503
// (try again), not 404 for a room that may exist.
func (n *Node) RoomNodes(name string) ([]string, error) {
	st, ok, err := n.getOpenErr(name)
	if err != nil || !ok {
		return nil, err
	}
	var out []string
	for _, node := range nodesOf(st) {
		if node != n.id {
			out = append(out, node)
		}
	}
	return out, nil
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

// A room's recording claim: the one room recording of a room in the
// cluster, held in the room state bucket under its own key ("x" + the
// room's name, beside the room's "r" key) and changed only by
// compare-and-set, so of simultaneous starts on several nodes exactly one
// wins. The recorder decides what a claim says and when a held one is
// stale (recorder/claim.go).

// recKey is the key of a room's recording claim.
func recKey(name string) string {
	return "x" + base64.RawURLEncoding.EncodeToString([]byte(name))
}

// ClaimRecording writes a room's recording claim: it creates it when rev
// is 0, else replaces the claim at revision rev; won, curRev is the new
// revision. When another write got there first, won is false and cur,
// curRev are the claim held now.
func (n *Node) ClaimRecording(room string, value []byte, rev uint64) (cur []byte, curRev uint64, won bool, err error) {
	// The store is briefly unavailable while its stream elects a new
	// leader (the node that died, whose recording is being taken over,
	// may have led it): wait for it as the room state does.
	deadline := time.Now().Add(n.opts.StoreWait)
	for {
		cur, curRev, won, err = n.claimRecording(room, value, rev)
		if err == nil || time.Now().After(deadline) || n.bus.nc.IsClosed() {
			return cur, curRev, won, err
		}
		time.Sleep(250 * time.Millisecond)
	}
}

func (n *Node) claimRecording(room string, value []byte, rev uint64) (cur []byte, curRev uint64, won bool, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), kvTimeout)
	defer cancel()
	key := recKey(room)
	var newRev uint64
	if rev == 0 {
		newRev, err = n.bus.kv.Create(ctx, key, value)
	} else {
		newRev, err = n.bus.kv.Update(ctx, key, value, rev)
	}
	if err == nil {
		n.owned.recClaimed(room, value) // written back if the bucket is lost (owned.go)
		return nil, newRev, true, nil
	}
	if !errors.Is(err, jetstream.ErrKeyExists) && !errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		return nil, 0, false, fmt.Errorf("recording claim: %w", err)
	}
	// The leader's value: a replica's (kv.Get) may not have the write
	// that beat this one yet, and "none" made the caller try to create
	// the claim again at once, twenty times, and answer 409 without the
	// recording that holds the room (TestRecordingSimultaneousStarts).
	v, vrev, gerr := n.leaderValueAfterConflict(ctx, key, rev)
	if gerr != nil {
		return nil, 0, false, fmt.Errorf("recording claim: %w", gerr)
	}
	return v, vrev, false, nil // vrev 0: released meanwhile, the caller tries again
}

// leaderValueAfterConflict is leaderValue after a compare-and-set at
// revision rev was refused: the leader's value once it holds another
// revision than rev (leaderAfterConflict, conflict.go). Read at once, it
// was still "none" for a claim being created by another node at that
// moment (1 in 40 simultaneous creates on an idle machine, every one of
// a start's twenty tries on a loaded one).
func (n *Node) leaderValueAfterConflict(ctx context.Context, key string, rev uint64) (value []byte, vrev uint64, err error) {
	m, err := n.leaderAfterConflict(ctx, key, rev)
	if err != nil || m == nil {
		return nil, 0, err
	}
	return m.Data, m.Seq, nil
}

// RenewRecordingClaim writes a room's recording claim again, the same
// value at revision rev, once within ctx (the claim's lease, see
// recorder/lease.go): held is false when the claim is another's or gone.
// A renewal that timed out but landed is recognised by its value.
func (n *Node) RenewRecordingClaim(ctx context.Context, room string, value []byte, rev uint64) (newRev uint64, held bool, err error) {
	ctx, cancel := context.WithTimeout(ctx, kvTimeout)
	defer cancel()
	key := recKey(room)
	newRev, err = n.bus.kv.Update(ctx, key, value, rev)
	if err == nil {
		return newRev, true, nil
	}
	if !errors.Is(err, jetstream.ErrKeyExists) && !errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		return 0, false, fmt.Errorf("recording claim: %w", err)
	}
	cur, curRev, gerr := n.leaderValueAfterConflict(ctx, key, rev)
	switch {
	case gerr != nil:
		return 0, false, fmt.Errorf("recording claim: %w", gerr)
	case curRev != 0 && bytes.Equal(cur, value):
		return curRev, true, nil // written back into a new bucket (owned.go), or a renewal that landed
	case curRev == 0 && n.owned.recOwned(room, value):
		// Gone while this node holds it: only its holder deletes a claim
		// (recorder/claim.go), so the bucket was made again (its NATS
		// server restarted) and this renewal came before the write-back.
		if newRev, err := n.bus.kv.Create(ctx, key, value); err == nil {
			return newRev, true, nil
		} else if !isConflict(err) {
			return 0, false, fmt.Errorf("recording claim: %w", err)
		}
		cur, curRev, gerr = n.leaderValueAfterConflict(ctx, key, 0)
		if gerr == nil && curRev != 0 && bytes.Equal(cur, value) {
			return curRev, true, nil
		}
		if gerr != nil {
			return 0, false, fmt.Errorf("recording claim: %w", gerr)
		}
	}
	n.owned.recLost(room, value)
	return 0, false, nil
}

// RecordingClaim reads a room's recording claim; rev 0 when there is none.
func (n *Node) RecordingClaim(room string) (value []byte, rev uint64, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), kvTimeout)
	defer cancel()
	// A replica's read (the nearest answers, even while the stream elects
	// a leader): the callers look, and a compare-and-set decides.
	e, err := n.bus.kv.Get(ctx, recKey(room))
	if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
		return nil, 0, nil
	}
	if err != nil {
		return nil, 0, fmt.Errorf("recording claim: %w", err)
	}
	return e.Value(), e.Revision(), nil
}

// DropRecordingClaim deletes a room's recording claim if it is still at
// revision rev.
func (n *Node) DropRecordingClaim(room string, rev uint64) error {
	ctx, cancel := context.WithTimeout(context.Background(), kvTimeout)
	defer cancel()
	err := n.bus.kv.Delete(ctx, recKey(room), jetstream.LastRevision(rev))
	if err == nil {
		n.owned.recClaimed(room, nil)
	}
	return err
}

// OnNodeGone registers f, called (on its own goroutine) when another node
// said goodbye or stopped heartbeating: the recorder takes a dead node's
// room recordings over.
func (n *Node) OnNodeGone(f func(node string)) {
	n.goneMu.Lock()
	n.goneHooks = append(n.goneHooks, f)
	n.goneMu.Unlock()
}

func (n *Node) notifyNodeGone(id string) {
	n.goneMu.Lock()
	hooks := append([]func(string){}, n.goneHooks...)
	n.goneMu.Unlock()
	for _, f := range hooks {
		n.spawn(func() { f(id) })
	}
}
