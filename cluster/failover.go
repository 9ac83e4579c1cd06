package cluster

import (
	"context"
	"encoding/json"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/starling-rtc/starling/room"
)

// Failover, part two (takeover.go is part one). A dead node's members stay
// in the room state for the resume window (purgeLater), so that its
// participants can still be taken over; a node that is alive but draining
// hands its participants over when they resume through another node
// (handoff). See docs/cluster-failover.md.

// handoffMsg asks a node to release one of its participants.
type handoffMsg struct {
	Room  string `json:"room"`
	ID    string `json:"id"`
	Token string `json:"token"` // hash of the resume token presented
}

// handoffTimeout bounds the wait for a node to release a participant.
const handoffTimeout = 3 * time.Second

// handoff asks the live node holding a participant to release it to this
// node (it does, even while its client's socket still looks open there:
// room.Manager.Release). The answer is room.Released, room.NotReleased
// (no such participant or token there), or room.StillHeld: the node did
// not answer (it may be dying), or answered "held" (a node of an earlier
// version, which kept a participant whose socket it still saw open).
func (n *Node) handoff(ctx context.Context, node, name, id, tokenHash string) (room.ReleaseResult, room.HandedOver) {
	data, _ := json.Marshal(handoffMsg{Room: name, ID: id, Token: tokenHash})
	ctx, cancel := context.WithTimeout(ctx, handoffTimeout)
	defer cancel()
	msg, err := n.bus.nc.RequestWithContext(ctx, nodeSubject(node, "handoff"), data)
	switch {
	case err != nil:
		return room.StillHeld, room.HandedOver{}
	case string(msg.Data) == "ok":
		return room.Released, handedOver(msg)
	case string(msg.Data) == "held":
		return room.StillHeld, room.HandedOver{}
	}
	return room.NotReleased, room.HandedOver{}
}

// subscribeHandoff answers other nodes' requests to release a participant.
func (n *Node) subscribeHandoff() error {
	_, err := n.bus.nc.Subscribe(nodeSubject(n.id, "handoff"), func(m *nats.Msg) {
		var h handoffMsg
		if json.Unmarshal(m.Data, &h) != nil || n.rooms == nil {
			_ = m.Respond([]byte("no"))
			return
		}
		if n.releasePrior(h.Room, h.ID, h.Token) { // a member of this node's previous run (prior.go)
			_ = m.RespondMsg(releasedMsg(room.HandedOver{}))
			return
		}
		go func() { // closing a participant publishes events: not on the bus goroutine
			res, handed := n.rooms.ReleaseTracks(h.Room, h.ID, h.Token)
			switch res {
			case room.Released:
				_ = m.RespondMsg(releasedMsg(handed)) // "ok", its state in headers (settled.go)
			case room.StillHeld:
				_ = m.Respond([]byte("held"))
			default:
				_ = m.Respond([]byte("no"))
			}
		}()
	})
	return err
}

// purgeLater removes a dead node's members from the room state once the
// resume window has passed: until then its participants may resume
// through another node (Takeover needs their entries).
func (n *Node) purgeLater(node string) {
	window := time.Duration(0)
	if n.rooms != nil {
		window = n.rooms.ResumeWindow()
	}
	run := n.nodeRunOf(node) // the run declared gone: its key goes once it is purged (nodekeys.go)
	if window <= 0 {
		n.purgeNode(node)
		n.dropNodeKey(node, run)
		return
	}
	n.spawn(func() {
		select {
		case <-time.After(window):
		case <-n.stop:
			return
		}
		// Only while this node's own bus has been up long enough to hear
		// the other's heartbeats: a node that was cut off itself, its link
		// just back, would purge live nodes' members.
		for !n.busSteady() {
			select {
			case <-time.After(hbInterval):
			case <-n.stop:
				return
			}
		}
		// Nor while it answers: found gone during a stall it was not
		// (expire), heard again only now.
		if !n.reg.alive(node) && !n.answersPing(node) {
			n.purgeNode(node)
			n.dropNodeKey(node, run)
		}
	})
}

// busSteady reports whether this node's bus connection has been up for
// longer than the heartbeat expiry.
func (n *Node) busSteady() bool {
	up := n.busUp.Load()
	return up != 0 && time.Since(time.Unix(0, up)) > hbExpiry
}

// Abort leaves the cluster as a killed process does: no goodbye, the
// heartbeats stop, the relay and the bus just close. Server.Abort uses it
// to kill a node in-process in tests.
func (n *Node) Abort() {
	n.closeOnce.Do(func() {
		n.stopSpawning() // Crash (tests) waits for n.wg
		n.bus.nc.Close()
		if n.media.t != nil {
			_ = n.media.t.Close()
		}
		if n.bus.ns != nil {
			n.bus.ns.Shutdown()
		}
	})
}

// nodeBack is called when a node is heard that was not alive: it started,
// or its bus link came back after a cut. Each local room asks it for its
// part, so its participants and tracks (ended here when it went silent)
// come back without waiting for its next event.
func (n *Node) nodeBack(id string) {
	if n.rooms == nil {
		return
	}
	if _, was := n.lost.LoadAndDelete(id); was {
		n.rs.resyncAll()  // this node's watches may have missed changes while the link was down
		n.rewriteTracks() // the others may have found this node gone too, and deleted its track keys (trackkeys.go)
	}
	n.spawn(func() {
		for _, name := range n.rooms.RoomNames() {
			if r := n.rooms.Room(name); r != nil {
				n.requestSnapshot(r, id)
			}
		}
	})
}
