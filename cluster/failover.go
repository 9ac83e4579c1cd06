package cluster

import (
	"encoding/json"
	"time"

	"github.com/nats-io/nats.go"
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
// node (it does if it is draining or its client is away); true once it has.
func (n *Node) handoff(node, name, id, tokenHash string) bool {
	data, _ := json.Marshal(handoffMsg{Room: name, ID: id, Token: tokenHash})
	msg, err := n.bus.nc.Request(nodeSubject(node, "handoff"), data, handoffTimeout)
	return err == nil && string(msg.Data) == "ok"
}

// subscribeHandoff answers other nodes' requests to release a participant.
func (n *Node) subscribeHandoff() error {
	_, err := n.bus.nc.Subscribe(nodeSubject(n.id, "handoff"), func(m *nats.Msg) {
		var h handoffMsg
		if json.Unmarshal(m.Data, &h) != nil || n.rooms == nil {
			_ = m.Respond([]byte("no"))
			return
		}
		go func() { // closing a participant publishes events: not on the bus goroutine
			if n.rooms.Release(h.Room, h.ID, h.Token) {
				_ = m.Respond([]byte("ok"))
				return
			}
			_ = m.Respond([]byte("no"))
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
	if window <= 0 {
		n.purgeNode(node)
		return
	}
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		select {
		case <-time.After(window):
		case <-n.stop:
			return
		}
		if !n.reg.alive(node) {
			n.purgeNode(node)
		}
	}()
}

// Abort leaves the cluster as a killed process does: no goodbye, the
// heartbeats stop, the relay and the bus just close. Server.Abort uses it
// to kill a node in-process in tests.
func (n *Node) Abort() {
	n.closeOnce.Do(func() {
		close(n.stop)
		n.bus.nc.Close()
		if n.media.t != nil {
			_ = n.media.t.Close()
		}
		if n.bus.ns != nil {
			n.bus.ns.Shutdown()
		}
	})
}
