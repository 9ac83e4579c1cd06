package cluster

import (
	"context"
	"time"
)

// The last node out. A cluster's nodes stopping at once (a deployment
// taken down; every test cluster at its test's end) leave the last of
// them without a store majority, and its closing writes (a member's
// removal, its node key's delete) each waited out their time for an
// answer that cannot come: 0.5 s for the node key, the store wait (8 s)
// for a participant who left just before. A node of an embedded bus that
// is closing and has lost its routes to every other node is alone: its
// store writes end at once instead (n.lastOut). An external bus is never
// alone (bus.alone).

// watchLastOut starts, as Close begins, the watch that ends n.lastOut
// once the node is alone; it ends with Close.
func (n *Node) watchLastOut() {
	go func() {
		// nats-server tells of no route closing: looked at locally
		// (Routez) every 20 ms while the node closes.
		for !n.bus.alone() {
			select {
			case <-n.lastOut.Done(): // Close ended
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
		n.endLastOut()
	}()
}

// newLastOut is n.lastOut and its end, made with the node.
func newLastOut() (context.Context, context.CancelFunc) {
	return context.WithCancel(context.Background())
}
