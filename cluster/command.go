package cluster

import (
	"encoding/json"
	"errors"
	"math"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/starling-rtc/starling/protocol"
	"github.com/starling-rtc/starling/room"
)

// Admin commands to another node's participant (mute, update) wait for
// that node to take them. Sent and forgotten, a command to a node that had
// died went nowhere while the admin API answered 200 (and PATCH showed the
// participant unchanged): the participant waits there to resume through
// another node, where it starts from its member key, with new tracks. Now
// such a command is 409, saying when the participant will be removed if
// it does not resume; after that it is 404, as for anyone who left.

// commandTimeout bounds the wait for the participant's node to take a
// command (its ctl subscription answers at once: control, rooms.go).
const commandTimeout = 2 * time.Second

// Command implements room.Bus.
func (n *Node) Command(node, name string, ev room.Event) error {
	if node == n.id {
		n.Control(node, name, ev)
		return nil
	}
	if _, gone := n.lost.Load(node); gone && !n.reg.alive(node) {
		return n.nodeGoneError(node, ev.ParticipantID)
	}
	ev.Node = n.id
	data, _ := json.Marshal(ctlMsg{Room: name, Event: ev})
	_, err := n.bus.nc.Request(nodeSubject(node, "ctl"), data, commandTimeout)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, nats.ErrNoResponders), errors.Is(err, nats.ErrTimeout) && !n.reg.alive(node):
		return n.nodeGoneError(node, ev.ParticipantID)
	}
	return protocol.Errorf(protocol.CodeUnavailable, "participant %s's node %s did not take the command (%v): try again", ev.ParticipantID, node, err)
}

// nodeGoneError is the 409 of a command to a participant whose node is
// gone: it stays for the rest of the resume window, counted from when this
// node found its node gone (or from now plus the time to find it so).
func (n *Node) nodeGoneError(node, id string) error {
	var window time.Duration
	if n.rooms != nil {
		window = n.rooms.ResumeWindow()
	}
	left := window + hbExpiry
	if v, ok := n.lost.Load(node); ok {
		if at, ok := v.(time.Time); ok {
			left = window - time.Since(at)
		}
	}
	secs := int(math.Ceil(max(left, 0).Seconds()))
	return protocol.Errorf(protocol.CodeConflict,
		"participant %s's node %s is gone: the participant stays until it resumes through another node, or is removed within %d s; try again once it resumed", id, node, secs)
}
