package client

import (
	"sync"
	"time"

	"github.com/pion/webrtc/v4"
)

// A drain without a break. A draining node sends `reconnect` and closes the
// socket, but it keeps forwarding what the client's old publisher
// connection sends (and sending on its old subscriber connection) until the
// other nodes take the client's tracks from the node it resumed through
// (docs/cluster-failover.md "Drain (SIGTERM)"). So the client opens its new
// connections and publishes again first, and keeps the old ones open
// meanwhile: its tracks write to both. The old ones close when their node
// closes them, or after oldPeersMax.

// oldPeersMax bounds how long a drained node's connections are kept.
const oldPeersMax = 15 * time.Second

// oldPeers are the connections to a drained node still open.
type oldPeers struct {
	mu  sync.Mutex
	pcs []*webrtc.PeerConnection
}

// keepOld keeps pcs open until their node closes them, oldPeersMax, or
// Close. Call with peerMu held.
func (c *Client) keepOld(pcs ...*webrtc.PeerConnection) {
	for _, pc := range pcs {
		pc := pc
		// Their candidates would go to the new node: nothing more is
		// negotiated on them.
		pc.OnICECandidate(func(*webrtc.ICECandidate) {})
		c.old.mu.Lock()
		if c.closed.Load() {
			c.old.mu.Unlock()
			closePeer(pc, c.log)
			continue
		}
		c.old.pcs = append(c.old.pcs, pc)
		c.old.mu.Unlock()
		pc.OnConnectionStateChange(func(s webrtc.PeerConnectionState) {
			switch s {
			case webrtc.PeerConnectionStateDisconnected, webrtc.PeerConnectionStateFailed, webrtc.PeerConnectionStateClosed:
				go c.dropOld(pc)
			}
		})
		time.AfterFunc(oldPeersMax, func() { c.dropOld(pc) })
	}
}

// dropOld closes one kept connection, or all of them (nil).
func (c *Client) dropOld(pc *webrtc.PeerConnection) {
	c.old.mu.Lock()
	var gone []*webrtc.PeerConnection
	kept := c.old.pcs[:0]
	for _, o := range c.old.pcs {
		if pc == nil || o == pc {
			gone = append(gone, o)
		} else {
			kept = append(kept, o)
		}
	}
	c.old.pcs = kept
	c.old.mu.Unlock()
	for _, o := range gone {
		closePeer(o, c.log)
	}
}
