package sfu

import "sync"

// packetCache keeps the last payloads received on one video layer, so that
// down tracks can answer their subscribers' NACKs. It is shared by every
// subscriber of the layer: one copy per received packet, however many
// subscribers, instead of one per subscriber. Payloads sit back to back in
// a byte ring; an index by sequence number finds them, and an entry whose
// bytes were overwritten since is a miss.
type packetCache struct {
	mu    sync.Mutex
	ring  []byte
	pos   uint64 // absolute write position: ring offset = pos % len(ring)
	index [cacheEntries]cacheEntry
	// hi is the newest sequence number put (by RTP order, not arrival: a
	// late repair does not lower it), for a down track starting on a late
	// keyframe (replay.go); haveHi until the first put.
	hi     uint16
	haveHi bool
}

type cacheEntry struct {
	at     uint64 // absolute position of the payload
	ts     uint32 // the packet's RTP timestamp and marker: a down track
	marker bool   // starting late replays packets from here (replay.go)
	n      uint16
	seq    uint16
	valid  bool
}

const (
	// cacheBytes holds ~1.7 s of a 2.5 Mbit/s layer; NACKs for older
	// packets come too late to matter (maxResendAge).
	cacheBytes = 512 << 10
	// cacheEntries indexes ~4.5 s of 220 packets/s (a power of two).
	cacheEntries = 1024
)

func newPacketCache() *packetCache {
	return &packetCache{ring: make([]byte, cacheBytes)}
}

// put stores a payload received with sequence number seq, timestamp ts and
// the marker bit.
func (c *packetCache) put(seq uint16, ts uint32, marker bool, payload []byte) {
	n := len(payload)
	if n == 0 || n > maxPacket {
		return
	}
	c.mu.Lock()
	off := int(c.pos % cacheBytes)
	if off+n > cacheBytes { // no room before the end: start over at 0
		c.pos += uint64(cacheBytes - off)
		off = 0
	}
	copy(c.ring[off:], payload)
	c.index[seq%cacheEntries] = cacheEntry{at: c.pos, ts: ts, marker: marker, n: uint16(n), seq: seq, valid: true}
	c.pos += uint64(n)
	// Ahead of hi, or so far behind that the publisher's numbering jumped
	// back (a repair is never older than the index).
	if d := int16(seq - c.hi); !c.haveHi || d > 0 || d < -cacheEntries {
		c.hi, c.haveHi = seq, true
	}
	c.mu.Unlock()
}

// newest returns the newest sequence number put (see hi); false before
// the first.
func (c *packetCache) newest() (uint16, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.hi, c.haveHi
}

// get copies the payload of seq into dst and returns its length; false if it
// is not (or no longer) cached or dst is too small.
func (c *packetCache) get(seq uint16, dst []byte) (int, bool) {
	n, _, _, ok := c.getPacket(seq, dst)
	return n, ok
}

// getPacket is get that also returns the packet's timestamp and marker.
func (c *packetCache) getPacket(seq uint16, dst []byte) (n int, ts uint32, marker, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.index[seq%cacheEntries]
	if !e.valid || e.seq != seq || c.pos-e.at > cacheBytes-uint64(e.n) || int(e.n) > len(dst) {
		return 0, 0, false, false
	}
	off := int(e.at % cacheBytes)
	return copy(dst, c.ring[off:off+int(e.n)]), e.ts, e.marker, true
}
