package cluster

import (
	"encoding/json"
	"sync"
	"time"

	"github.com/starling-rtc/starling/room"
)

// A takeover moves a member by deleting its key under the old node and
// writing it under the new one (takeover.go). Between the two the member is
// in the room state under no key, and the other nodes' comparison of the
// state with their rooms (reconcile.go) removes a remote participant absent
// from the state for confirmAfter: its room's participants were told it
// left, though it was only moving. The gap is a few milliseconds, but a
// lost write tried again, or a takeover that answered 503 and is finished
// by the client's next attempt, makes it seconds on a loaded machine
// (TestTakeoverWriteLostAfterDelete: "bob saw alice leave", 2 runs of 5
// under -race beside two busy loops). So the taking node says, on the
// room's subject, that it is moving the member before it deletes the key;
// the others leave that participant alone while the move may last, and
// remove it then if it is still absent.

// evMoving is the event type of that announcement. It is handled by the
// cluster package and never reaches the room (it has no sequence number).
const evMoving = "cluster.moving"

// movingFor is how long an announced move holds off the removal: a
// takeover's budget and the client's next attempt.
const movingFor = takeoverWait + 5*time.Second

type movingMembers struct {
	mu    sync.Mutex
	until map[string]time.Time // by room and participant id
}

func movingKey(name, id string) string { return name + "\x00" + id }

// announceMove tells the room's other nodes that this node is moving
// member id to itself.
func (n *Node) announceMove(name, id string) {
	data, _ := json.Marshal(room.Event{Type: evMoving, Node: n.id, ParticipantID: id})
	_ = n.bus.nc.Publish(roomSubject(name), data) // best effort: without it a slow move may end the stub
}

func (n *Node) noteMoving(name, id string) {
	m := &n.movingIn
	m.mu.Lock()
	defer m.mu.Unlock()
	now := time.Now()
	for k, t := range m.until {
		if now.After(t) {
			delete(m.until, k)
		}
	}
	if m.until == nil {
		m.until = map[string]time.Time{}
	}
	m.until[movingKey(name, id)] = now.Add(movingFor)
}

// isMoving reports whether another node announced it is moving the room's
// participant id, within movingFor.
func (n *Node) isMoving(name, id string) bool {
	m := &n.movingIn
	m.mu.Lock()
	defer m.mu.Unlock()
	t, ok := m.until[movingKey(name, id)]
	return ok && time.Now().Before(t)
}
