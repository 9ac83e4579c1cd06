package sfu

// A down track waiting for a keyframe refuses everything before the
// keyframe's first packet. When that first packet is lost upstream, the
// keyframe's later packets (and often the next frames') arrive first and
// are refused; the repaired first packet then starts the stream. Without
// more, the refused packets were never sent: holes in the subscriber's
// numbering that no NACK can fill (a down track resends only what it sent),
// so the subscriber could not decode that keyframe and lost 2-3 packets
// (TestLossRecoveryUpstream, about one run in eight under load). So a down
// track remembers the newest packet it refused on the layer it waits for,
// and when it starts on a keyframe older than that, it forwards the
// refused packets from the source's cache right after the keyframe's first,
// in order and mapped as if they had come in order. Packets of that range
// still missing leave holes in the numbering: the subscriber NACKs them,
// and if they arrive (repaired) they are forwarded into their slots.

// maxReplay bounds how many packets after a late keyframe start are
// replayed: well inside the cache's index (cacheEntries), and more than an
// upstream repair takes (the SFU stops asking after 800 ms, nack.go).
const maxReplay = cacheEntries / 4

// PacketReplayer is a source that keeps recently received packets with
// their timestamp and marker (*Receiver, the cluster relay's imports).
type PacketReplayer interface {
	CachedPacket(layer int8, seq uint16, dst []byte) (n int, ts uint32, marker, ok bool)
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

// noteRefused remembers the newest packet refused on the layer waited
// for. Call with d.mu held.
func (d *DownTrack) noteRefused(seq uint16, layer int8) {
	if d.waitLayer != layer || int16(seq-d.waitHi) > 0 {
		d.waitHi, d.waitLayer = seq, layer
	}
}

// replayRefused forwards, after the keyframe start first (just forwarded),
// the packets of layer refused while waiting that came after it. Call with
// d.mu held, the stream just started on layer.
func (d *DownTrack) replayRefused(src Source, first uint16, firstTS uint32, layer int8) {
	hi, refused := d.waitHi, d.waitLayer == layer
	d.waitLayer = -1
	if ahead := int16(hi - first); !refused || ahead <= 0 || ahead > maxReplay {
		return
	}
	cache, ok := src.(PacketReplayer)
	if !ok {
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
