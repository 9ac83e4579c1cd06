package cluster

import (
	"encoding/json"
	"sort"
	"sync"
	"time"

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
	st, _, ok := n.get(name)
	if !ok {
		return "", nil, false
	}
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
	return st.SID, ps, true
}

// CloseRoom asks every node with a part of the room to close it (admin
// DELETE /v1/rooms/{room}); it reports whether the room exists.
func (n *Node) CloseRoom(name string) bool {
	st, _, ok := n.get(name)
	if !ok {
		return false
	}
	for _, node := range nodesOf(st) {
		if node != n.id {
			n.Control(node, name, room.Event{Type: room.CtlCloseRoom, Reason: protocol.ReasonRoomClosed})
		}
	}
	return true
}
