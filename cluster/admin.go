package cluster

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/starling-rtc/starling/protocol"
	"github.com/starling-rtc/starling/room"
)

// nodesOf lists the nodes with members in a room's state.
func nodesOf(st roomState) []string {
	seen := map[string]bool{}
	var out []string
	for _, m := range st.Members {
		if !seen[m.Node] {
			seen[m.Node] = true
			out = append(out, m.Node)
		}
	}
	sort.Strings(out)
	return out
}

// RoomParticipants gathers a room's participants from every node that has
// a part of it (for the admin API of a node without one).
func (n *Node) RoomParticipants(name string) (sid string, ps []room.RemoteParticipant, ok bool) {
	st, ok := n.getOpen(name)
	if !ok {
		return "", nil, false
	}
	return st.SID, n.participantsOf(name, st), true
}

// participantsOf asks each node of a room's state for its participants.
func (n *Node) participantsOf(name string, st roomState) (ps []room.RemoteParticipant) {
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, node := range nodesOf(st) {
		wg.Add(1)
		go func(node string) {
			defer wg.Done()
			var snap room.NodeSnapshot
			if node == n.id {
				if r := n.rooms.Room(name); r != nil {
					snap = r.Snapshot()
				}
			} else {
				msg, err := n.bus.nc.Request(nodeSubject(node, "sync"), []byte(name), 3*time.Second)
				if err != nil || json.Unmarshal(msg.Data, &snap) != nil {
					return
				}
			}
			mu.Lock()
			ps = append(ps, snap.Participants...)
			mu.Unlock()
		}(node)
	}
	wg.Wait()
	sort.Slice(ps, func(i, j int) bool { return ps[i].Info.JoinedAt < ps[j].Info.JoinedAt })
	return ps
}

// subscribeView answers other nodes' requests for this node's part of a
// room as the admin API shows it (Options.LocalView).
func (n *Node) subscribeView() error {
	_, err := n.bus.nc.Subscribe(nodeSubject(n.id, "view"), func(m *nats.Msg) {
		_ = m.Respond(n.localView(string(m.Data)))
	})
	return err
}

func (n *Node) localView(name string) json.RawMessage {
	if n.opts.LocalView != nil {
		if v := n.opts.LocalView(name); v != nil {
			return v
		}
	}
	return json.RawMessage("[]")
}

// RoomView gathers the admin view of a room's participants from every node
// with a part of it, this one included: one JSON array per node that
// answered within 3 s (each node shows its own participants, with their
// permissions and subscriptions), and the members, as the room state has
// them, of the nodes that did not (a killed node's participants stay in
// the room for the resume window: they are still listed, and can be
// kicked, from every node). ok is false when the room is not in the
// cluster's state, err ErrStoreUnavailable when the state store did not
// answer (then nobody knows).
func (n *Node) RoomView(name string) (sid string, views []json.RawMessage, unanswered []room.Member, ok bool, err error) {
	st, ok, err := n.getOpenErr(name)
	if !ok {
		return "", nil, nil, false, err
	}
	nodes := nodesOf(st)
	views = make([]json.RawMessage, len(nodes))
	var wg sync.WaitGroup
	for i, node := range nodes {
		if node == n.id {
			views[i] = n.localView(name)
			continue
		}
		wg.Add(1)
		go func(i int, node string) {
			defer wg.Done()
			if msg, err := n.bus.nc.Request(nodeSubject(node, "view"), []byte(name), 3*time.Second); err == nil {
				views[i] = msg.Data
			}
		}(i, node)
	}
	wg.Wait()
	out := views[:0]
	for i, v := range views {
		if v != nil {
			out = append(out, v)
			continue
		}
		for _, m := range st.Members {
			if m.Node == nodes[i] {
				unanswered = append(unanswered, m)
			}
		}
	}
	return st.SID, out, unanswered, true, nil
}

// getOpen is the room's state for the admin API: exact (getCurrent,
// current.go), and a room the admin deleted is gone.
func (n *Node) getOpen(name string) (roomState, bool) {
	st, ok, _ := n.getOpenErr(name)
	return st, ok
}

// getOpenErr is getOpen that tells a store that did not answer
// (ErrStoreUnavailable) from a room that does not exist.
func (n *Node) getOpenErr(name string) (roomState, bool, error) {
	st, ok, err := n.getCurrent(name)
	return st, ok && !st.Closed, err
}

// RoomCount is one room of the cluster as GET /v1/rooms shows it.
type RoomCount struct {
	Name         string
	SID          string
	Participants int // members on every node, those waiting to resume included
	Tracks       int
}

// roomListWorkers bounds the nodes asked at once for rooms without a part here.
const roomListWorkers = 8

// Rooms lists every open room of the cluster from the room state store
// (one entry per room, so no duplicates), with its participants on every
// node. localTracks counts the tracks of a room this node has a part of
// (it sees every node's tracks; ok false without a part); the tracks of
// the other rooms are counted from their nodes' snapshots.
func (n *Node) Rooms(localTracks func(name string) (tracks int, ok bool)) ([]RoomCount, error) {
	names, err := n.roomNames()
	if err != nil {
		return nil, err
	}
	counts := make([]RoomCount, len(names))
	var wg sync.WaitGroup
	sem := make(chan struct{}, roomListWorkers)
	i := 0
	for name, rev := range names {
		wg.Add(1)
		sem <- struct{}{}
		go func(rc *RoomCount) {
			defer func() { <-sem; wg.Done() }()
			// The room's own key is known through the leader's newest
			// change already (roomNames): one leader request per room.
			st, ok, _ := n.currentState(name, &rev)
			if !ok || st.Closed || len(st.Members) == 0 {
				return // deleted meanwhile, or empty and about to close
			}
			*rc = RoomCount{Name: name, SID: st.SID, Participants: len(st.Members)}
			if tracks, ok := localTracks(name); ok {
				rc.Tracks = tracks
				return
			}
			for _, p := range n.participantsOf(name, st) {
				rc.Tracks += len(p.Info.Tracks)
			}
		}(&counts[i])
		i++
	}
	wg.Wait()
	out := counts[:0]
	for _, rc := range counts {
		if rc.Name != "" {
			out = append(out, rc)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// roomNames lists the rooms in the room state store (their own keys, not
// their members'), with every room the store's leader had when asked: the
// key listing reads a replica (readKeysThrough). Each room's name maps to
// the revision of its key read then.
func (n *Node) roomNames() (map[string]uint64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), kvTimeout)
	defer cancel()
	filters := []string{"*"}
	lctx, lcancel := context.WithTimeout(ctx, leaderWait)
	newest, err := n.leaderLastChange(lctx, filters)
	lcancel()
	grace := catchUpWait
	if err != nil {
		newest, grace = n.lastChangeOf(ctx, filters), time.Second // no leader now: a replica's read
	}
	present := map[string]uint64{} // key -> revision, 0 when deleted
	err = n.readKeysThrough(ctx, filters, newest, grace, func(e jetstream.KeyValueEntry) {
		present[e.Key()] = 0
		if e.Operation() == jetstream.KeyValuePut {
			present[e.Key()] = e.Revision()
		}
	})
	if err != nil {
		return nil, err
	}
	names := map[string]uint64{}
	for key, rev := range present {
		raw, err := base64.RawURLEncoding.DecodeString(strings.TrimPrefix(key, "r"))
		if rev != 0 && strings.HasPrefix(key, "r") && err == nil {
			names[string(raw)] = rev
		}
	}
	return names, nil
}

// ControlMember sends a command (kick, mute, update) to the node of a
// member of a room, for the admin API of a node with no part of the room
// (where no stub of the participant exists to send it): 404 when the room
// or the member is unknown in the cluster, and for a mute or an update the
// errors of Command (409: its node is gone). A kick of a dead node's
// participant evicts it (control).
func (n *Node) ControlMember(name, participantID string, ev room.Event) error {
	st, ok, err := n.getOpenErr(name)
	if err != nil {
		return protocol.Errorf(protocol.CodeUnavailable, "%v", err)
	}
	if ok {
		for _, m := range st.Members {
			if m.ID != participantID {
				continue
			}
			ev.ParticipantID = participantID
			if ev.Type == room.CtlKick {
				n.Control(m.Node, name, ev)
				return nil
			}
			return n.Command(m.Node, name, ev)
		}
	}
	return protocol.Errorf(protocol.CodeNotFound, "no participant %q in room %q", participantID, name)
}

// RoomExists reports whether the cluster's room state has the room; err
// is ErrStoreUnavailable when the store did not answer (the room may exist).
func (n *Node) RoomExists(name string) (bool, error) {
	_, ok, err := n.getOpenErr(name)
	return ok, err
}

// SendData sends a server data message to a room's participants (those in
// to, all when empty) on every node with a part of it, for the admin API
// of a node without one. It returns false when the room is unknown, and
// the first id of to that is no member of it; err is ErrStoreUnavailable
// when the store did not answer (then ok is false and nobody knows).
func (n *Node) SendData(name, payload string, to []string) (ok bool, unknown string, err error) {
	st, ok, err := n.getOpenErr(name)
	if !ok {
		return false, "", err
	}
	members := map[string]bool{}
	for _, m := range st.Members {
		members[m.ID] = true
	}
	for _, id := range to {
		if !members[id] {
			return true, id, nil
		}
	}
	for _, node := range nodesOf(st) {
		n.Control(node, name, room.Event{Type: room.CtlData, Payload: payload, To: to})
	}
	return true, "", nil
}
