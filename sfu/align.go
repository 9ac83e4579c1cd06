package sfu

import (
	"hash/maphash"

	"github.com/pion/rtp"
)

// Where an audio handover goes over. The old and the new source carry the
// same publisher's audio by two paths (its old connection through the
// draining node, its new one), and the new path may be ahead: going over at
// the new source's first packet lost the frames still on their way on the
// old path (1-2 frames under -race, more on a loaded machine: a break the
// subscriber hears, with a continuous sequence). So the down track finds the
// place where the two streams meet and goes over there:
//
//   - the new source behind (or level): its packet is one the old source
//     delivered already; the old source stops there, and the new one takes
//     over at the packet that follows the last one forwarded;
//   - the new source ahead: its packets are held while the old source goes
//     on, until the old source delivers one of them; the down track then
//     goes over, sending the held packets that follow it.
//
// The place is found by content: the same frame has the same payload on
// both paths when the publisher writes one stream to both connections (the
// Go client does). A publisher whose two connections encode separately (a
// browser) has no frame in common: after alignHold packets of the new
// source without a match, the down track goes over at the newest one, as a
// video handover does (the old source went on meanwhile). Holding copies
// the payloads: a few dozen allocations once per handover, never in the
// steady state.

// alignRing is how many of the old source's latest packets are remembered.
const alignRing = 64

// alignHold bounds the new source's packets held (about a second of 20 ms
// frames) while looking for the place.
const alignHold = 50

var alignSeed = maphash.MakeSeed()

// alignment is an audio handover's search for the place (under d.mu).
type alignment struct {
	ring  [alignRing]alignSeen // the old source's packets forwarded, latest at n-1
	n     int
	held  []heldPacket // the new source's, ahead of the old one
	found bool         // off is known
	off   uint32       // new timestamp - old timestamp of the same frame
	cut   bool         // the old source stopped: the new one is behind it
}

type alignSeen struct {
	ts   uint32
	hash uint64
}

// heldPacket is a packet of the new source kept until the switch.
type heldPacket struct {
	seq     uint16
	ts      uint32
	marker  bool
	hash    uint64
	payload []byte
}

// alignMinPayload: shorter payloads place nothing. Silence (Opus DTX and
// comfort noise are a few bytes) repeats, and two encoders may happen to
// send the same few bytes at different places.
const alignMinPayload = 16

// payloadHash is 0 for a payload too short to tell a frame by.
func payloadHash(p []byte) uint64 {
	if len(p) < alignMinPayload {
		return 0
	}
	return maphash.Bytes(alignSeed, p)
}

// alignOldLocked handles a packet of the old source during an audio
// handover: forward reports whether it goes out. d.mu held.
func (d *DownTrack) alignOldLocked(ho *handover, in *rtp.Header, payload []byte) (forward bool) {
	a := &ho.align
	if a.cut {
		return false // the new source takes over after what was forwarded
	}
	h := payloadHash(payload)
	if len(a.held) > 0 && h != 0 {
		if i, ok := matchHeld(a.held, h); ok {
			// The old source reached what the new one sent: go over there,
			// sending the held packets from that one on.
			a.found, a.off = true, a.held[i].ts-in.Timestamp
			d.switchLocked(ho, 0, a.held[i:], a.held[i].ts)
			return false
		}
	}
	a.ring[a.n%alignRing] = alignSeen{ts: in.Timestamp, hash: h}
	a.n++
	return true
}

// alignNewLocked handles a packet of the new source during an audio
// handover: now reports whether the down track goes over at it; otherwise
// it was forwarded already by the old source, or is held. d.mu held.
func (d *DownTrack) alignNewLocked(ho *handover, in *rtp.Header, payload []byte) (now bool) {
	a := &ho.align
	h := payloadHash(payload)
	if !a.found && h != 0 {
		if ts, ok := a.matchRing(h); ok {
			// Delivered by the old source already, and so was anything held.
			a.found, a.off, a.held = true, in.Timestamp-ts, nil
		}
	}
	if a.found {
		// Behind the old source: drop what it delivered, go over at the
		// first packet after the last one forwarded.
		if int32(in.Timestamp-a.off-d.tsIn) <= 0 {
			a.cut = true
			return false
		}
		return true
	}
	if len(a.held) >= alignHold {
		// No frame in common (the connections encode separately), or the
		// old source stalled: go over with the newest, as a video
		// handover does.
		return true
	}
	a.held = append(a.held, heldPacket{seq: in.SequenceNumber, ts: in.Timestamp, marker: in.Marker, hash: h,
		payload: append([]byte(nil), payload...)})
	return false
}

// matchRing finds the one remembered old packet with payload hash h.
func (a *alignment) matchRing(h uint64) (ts uint32, ok bool) {
	found := 0
	for i := 0; i < min(a.n, alignRing); i++ {
		if a.ring[i].hash == h {
			ts = a.ring[i].ts
			found++
		}
	}
	return ts, found == 1 // a repeated payload (silence) places nothing
}

// matchHeld finds the one held packet with payload hash h.
func matchHeld(held []heldPacket, h uint64) (int, bool) {
	at, found := -1, 0
	for i := range held {
		if held[i].hash == h {
			at = i
			found++
		}
	}
	return at, found == 1
}
