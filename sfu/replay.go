package sfu

// A down track waiting for a keyframe refuses everything before the
// keyframe's first packet. When that first packet is lost upstream, the
// keyframe's later packets (and often the next frames') arrive first and
// are refused; the repaired first packet then starts the stream. Without
// more, those packets were never sent: holes in the subscriber's numbering
// that no NACK can fill (a down track resends only what it sent), so the
// subscriber could not decode that keyframe and lost 2-3 packets
// (TestLossRecoveryUpstream, about one run in eight under load). So a down
// track starting on a keyframe older than the newest packet its source has
// on that layer forwards the packets after it from the source's cache right
// after the keyframe's first, in order and mapped as if they had come in
// order. Packets of that range still missing leave holes in the numbering:
// the subscriber NACKs them, and if they arrive (repaired) they are
// forwarded into their slots.
//
// The range is the source's, not what the down track itself refused: the
// packets may have come before the down track could take any (not yet
// bound, its subscriber's answer on its way, or its connection not up).
// It once remembered only the packets it refused: a second subscriber
// bound a few frames after the first lost the 14 packets after such a
// start (TestLossRecoveryUpstream, seq 65016-65029;
// TestLateKeyframeReplaysWhatCameBeforeBind).

// maxReplay bounds how many packets after a late keyframe start are
// replayed: well inside the cache's index (cacheEntries), and more than an
// upstream repair usually takes (2.8 s of a 90 packets/s camera; the SFU
// asks for a lost packet for 3 s, nack.go). A keyframe start repaired
// later is not replayed: the down track asks for a newer keyframe.
const maxReplay = cacheEntries / 4

// PacketReplayer is a source that keeps recently received packets with
// their timestamp and marker (*Receiver, the cluster relay's imports).
type PacketReplayer interface {
	CachedPacket(layer int8, seq uint16, dst []byte) (n int, ts uint32, marker, ok bool)
	// NewestCached is the newest sequence number received on a layer, by
	// RTP order (a late repair does not lower it); false before the first.
	NewestCached(layer int8) (seq uint16, ok bool)
}

// CachedPacket copies a recently received payload of a layer into dst and
// returns its timestamp and marker.
func (r *Receiver) CachedPacket(idx int8, seq uint16, dst []byte) (n int, ts uint32, marker, ok bool) {
	if idx < 0 || idx >= MaxLayers {
		return 0, 0, false, false
	}
	r.mu.Lock()
	l := r.layer[idx]
	r.mu.Unlock()
	if l == nil || l.cache == nil {
		return 0, 0, false, false
	}
	return l.cache.getPacket(seq, dst)
}

// NewestCached returns the newest sequence number received on a video
// layer (PacketReplayer).
func (r *Receiver) NewestCached(idx int8) (uint16, bool) {
	if idx < 0 || idx >= MaxLayers {
		return 0, false
	}
	r.mu.Lock()
	l := r.layer[idx]
	r.mu.Unlock()
	if l == nil || l.cache == nil {
		return 0, false
	}
	return l.cache.newest()
}

// replayLate forwards, after the keyframe start first (just forwarded),
// the packets of layer its source received after it. Call with d.mu held,
// the stream just started on layer: none of them was forwarded (the down
// track was on another layer or waiting).
func (d *DownTrack) replayLate(src Source, first uint16, firstTS uint32, layer int8) {
	cache, ok := src.(PacketReplayer)
	if !ok {
		return
	}
	hi, ok := cache.NewestCached(layer)
	if ahead := int16(hi - first); !ok || ahead <= 0 || ahead > maxReplay {
		return
	}
	if d.rtxScratch == nil {
		d.rtxScratch = make([]byte, maxPacket)
	}
	for seq := first + 1; seq != hi+1; seq++ {
		n, ts, marker, ok := cache.CachedPacket(layer, seq, d.rtxScratch)
		// Only packets from the keyframe on (by media time, within a
		// second): a publisher whose numbering jumped back leaves
		// packets of another stretch under these numbers.
		if !ok || uint32(ts-firstTS) >= d.codec.ClockRate {
			continue
		}
		counters.replayed.Add(1)
		d.forwardLocked(seq, ts, marker, d.rtxScratch[:n], layer, src)
	}
}
