package cluster

import "time"

// This node's own bus outage. A node whose bus connection is down hears
// nobody, and used to find every other node gone after hbExpiry (3.5 s):
// their tracks ended in its rooms (trackUnpublished, then trackPublished
// once heard again), and past the resume window their participants left
// (participantLeft, then participantJoined). When the NATS server itself
// restarted, every node lived through the same outage and nobody had gone
// (docs/cluster-failover.md "The NATS server restarted"). So a node does
// not judge the others while its own connection is down, nor for hbExpiry
// after it comes back (expire, nodes.go): until it could have heard them.
// A node heard again after falling silent during that outage (heardAgain)
// tells which outage it was by how long its own bus connection has been
// up (its heartbeat's busUpMs, measured on its own clock):
//
//   - up for less than the time since this node lost its connection: it
//     lost its connection too, during this node's outage (a NATS server
//     restarted, or every route cut): neither could hear the other and
//     neither ended anything; nothing is done but a resync (nodeBack);
//   - up for longer (or an older node that does not say): this node alone
//     was cut off, and the other found it gone and ended what it shared
//     with it (its relay streams to this node, this node's tracks). So
//     this node finds it gone now and at once back, as it did before when
//     it found it gone during the cut: its tracks end here and come back
//     with its snapshot, with the relay set up again.
//
// A node that is really gone is found so once this node's connection is
// steady again (expire: its ping is not answered).

// heartbeat is what a node publishes every hbInterval: its NodeInfo, and
// how long its bus connection has been up.
type heartbeat struct {
	NodeInfo
	BusUpMs int64 `json:"busUpMs,omitempty"`
}

// busUpFor is how long this node's bus connection has been up (0 while down).
func (n *Node) busUpFor() time.Duration {
	up := n.busUp.Load()
	if up == 0 {
		return 0
	}
	return time.Since(time.Unix(0, up))
}

// heardAgain is called when node id is heard after it was silent for
// longer than hbExpiry (last heard at lastHeard); busUpMs is how long its
// bus connection has been up.
func (n *Node) heardAgain(id string, lastHeard time.Time, busUpMs int64) {
	_, found := n.lost.Load(id)
	down, up := n.busDownAt.Load(), n.busUp.Load()
	// Held: this node's connection came back after the node was last
	// heard, so this node was away during (part of) its silence, and did
	// not judge it.
	held := !found && down != 0 && up != 0 && !lastHeard.IsZero() && time.Unix(0, up).After(lastHeard)
	if !held {
		n.nodeBack(id) // found gone here, or silent (a stall) while this node heard the bus
		return
	}
	sinceDown := time.Since(time.Unix(0, down))
	if busUpMs > 0 && time.Duration(busUpMs)*time.Millisecond <= sinceDown {
		n.log.Info("node heard again after an outage of the bus that both lived through: nothing ended", "node", id)
		n.nodeBack(id)
		return
	}
	n.log.Info("node heard again after this node was cut off from the bus: it took this node for gone", "node", id)
	n.spawn(func() { // not on the bus's goroutine: the rooms end its tracks
		n.nodeGone(id)
		n.nodeBack(id)
	})
}
