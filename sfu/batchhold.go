package sfu

import (
	"net/netip"
	"time"
)

// Held writes: the cluster relay sends a video frame's packets to a peer
// node together. Each datagram woke the flusher (one sendmmsg per packet)
// and, on the receiving node, its relay reader (one wake-up of an idle
// process per packet): per packet, not per viewer, so the cost fell on
// each node whatever its number of viewers, and a third of the viewers per
// node did not share it. Queued "held", a frame's packets leave in one
// segmented send when its last packet (marker bit) is written, and the
// peer reads them in one coalesced read. As for the down tracks' queues
// (sendqueue.go), holding costs a frame nothing, since it cannot be
// decoded before its last packet: a frame whose last packet is lost or
// that the publisher spreads out leaves holdTime after its first held
// packet, and a long one every holdMax packets.

// batchHold is a socket's held datagrams' state, under batchConn.mu.
type batchHold struct {
	n     int         // datagrams held since the flusher last took the queue
	timer *time.Timer // wakes the flusher holdTime after the first
	armed bool
}

// WriteHeld queues one datagram like WriteToAddrPort, but wakes the
// flusher only when last is true (a frame's last packet), when holdMax
// datagrams are held, or holdTime after the first one held. Any other
// write wakes it too, and it then sends every datagram queued.
func (b *batchConn) WriteHeld(p []byte, to netip.AddrPort, last bool) (int, error) {
	if last || len(p) > len(packetBuf{}) {
		return b.WriteToAddrPort(p, to)
	}
	buf := b.getBuf()
	n := copy(buf[:], p)
	return n, b.queue(buf, n, to, nil, 0, true)
}

// holdLocked counts one more held datagram and reports whether the flusher
// may sleep on (false: wake it now). Call with b.mu held.
func (b *batchConn) holdLocked() bool {
	h := &b.hold
	h.n++
	if h.n >= holdMax {
		return false
	}
	if !h.armed {
		h.armed = true
		if h.timer == nil {
			h.timer = time.AfterFunc(holdTime, b.releaseHeld)
		} else {
			h.timer.Reset(holdTime)
		}
	}
	return true
}

// releasedLocked: the flusher took the queue, held datagrams included.
// Call with b.mu held.
func (b *batchConn) releasedLocked() {
	h := &b.hold
	h.n = 0
	if h.armed {
		h.armed = false
		h.timer.Stop() // cheaper than a timer firing for nothing
	}
}

// releaseHeld is the hold timer: it wakes the flusher.
func (b *batchConn) releaseHeld() {
	b.mu.Lock()
	b.hold.armed = false
	b.mu.Unlock()
	select {
	case b.wake <- struct{}{}:
	default:
	}
}
