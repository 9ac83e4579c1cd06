package sfu

import (
	"log/slog"
	"net"
)

// Building blocks exported for sources and sinks outside this package (the
// cluster relay, cluster/relay): the same batched socket and packet cache
// the SFU's own hot path uses, so relayed media costs what local media does.

// BatchConn is a UDP socket whose sends are batched (sendmmsg, and
// segmentation offload when the kernel has it) by one flusher goroutine.
// WriteToAddrPort copies the datagram into a bounded queue and never blocks:
// a full queue drops it (counted by Dropped).
type BatchConn = batchConn

// NewBatchConn wraps c; Close closes c.
func NewBatchConn(c *net.UDPConn, log *slog.Logger) *BatchConn {
	return newBatchConn(c, true, log)
}

// PacketCache keeps the last payloads of one video layer by sequence
// number in a fixed byte ring (no allocation per packet), for NACK answers.
type PacketCache struct{ c packetCache }

// NewPacketCache allocates a cache (~0.5 MiB).
func NewPacketCache() *PacketCache {
	return &PacketCache{c: packetCache{ring: make([]byte, cacheBytes)}}
}

// Put stores a payload received with sequence number seq, timestamp ts
// and the marker bit.
func (p *PacketCache) Put(seq uint16, ts uint32, marker bool, payload []byte) {
	p.c.put(seq, ts, marker, payload)
}

// Get copies the payload of seq into dst; false if it is gone or dst is too small.
func (p *PacketCache) Get(seq uint16, dst []byte) (int, bool) { return p.c.get(seq, dst) }

// GetPacket is Get that also returns the packet's timestamp and marker
// (sfu.PacketReplayer).
func (p *PacketCache) GetPacket(seq uint16, dst []byte) (n int, ts uint32, marker, ok bool) {
	return p.c.getPacket(seq, dst)
}

// Newest returns the newest sequence number put, by RTP order (a late
// repair does not lower it); false before the first (sfu.PacketReplayer).
func (p *PacketCache) Newest() (uint16, bool) { return p.c.newest() }

// AudioLevels accumulates RFC 6464 audio levels between reads, as a
// Receiver does for the speakers detector: Add on the packet path (no lock,
// no allocation), Take like Receiver.TakeAudioLevel.
type AudioLevels struct{ a audioLevels }

// Add records the level in an audio level extension element (nil = none).
func (l *AudioLevels) Add(ext []byte) { l.a.add(ext) }

// Take returns the average level since the last call and the packet count.
func (l *AudioLevels) Take() (db float64, packets uint32) { return l.a.take() }
