package sfu

import "encoding/binary"

// A transport-wide congestion control feedback parser (the TWCC draft,
// draft-holmer-rmcat-transport-wide-cc-extensions-01, section 3.1) that
// decodes into buffers its owner reuses. pion's rtcp.TransportLayerCC
// makes a slice per chunk list and per delta list, a struct per chunk and
// per delta, and the rtcp.Packet interface values around them: several
// allocations per feedback, which with one feedback per ~15 packets was a
// measurable share of the "mallocs per forwarded packet" of issue 18.

// twccFeedback is one decoded feedback packet.
type twccFeedback struct {
	baseSeq uint16
	refTime int64 // reference time in µs: a 24-bit count of 64 ms units, wrapping (bwe.unwrapRef)
	fbCount uint8
	// One entry per packet status, in sequence order from baseSeq.
	status  []uint8 // 0 not received, 1 small delta, 2 large delta
	arrival []int64 // µs from the reference time (valid where status != 0)
}

// Packet status symbols.
const (
	twccNotReceived = 0
	twccSmallDelta  = 1
	twccLargeDelta  = 2
)

// twccMaxStatus bounds the statuses one feedback may describe: a packet
// from the network may claim 65,535, which the buffers must not follow.
const twccMaxStatus = 4096

// splitRTCP returns the first packet of a compound RTCP packet (its
// padding removed) and the rest; ok=false if it is malformed.
func splitRTCP(b []byte) (pkt, rest []byte, ok bool) {
	if len(b) < 4 || b[0]>>6 != 2 {
		return nil, nil, false
	}
	size := (int(binary.BigEndian.Uint16(b[2:4])) + 1) * 4
	if size > len(b) {
		return nil, nil, false
	}
	pkt, rest = b[:size], b[size:]
	if pkt[0]&0x20 != 0 { // padding: its length is in the last byte
		p := int(pkt[len(pkt)-1])
		if p == 0 || p > len(pkt)-4 {
			return nil, nil, false
		}
		pkt = pkt[:len(pkt)-p]
	}
	return pkt, rest, true
}

// isTWCC reports whether an RTCP packet is transport-wide feedback
// (PT 205, FMT 15).
func isTWCC(pkt []byte) bool { return pkt[1] == 205 && pkt[0]&0x1f == 15 }

// parse decodes one feedback packet (its RTCP header included) into fb;
// false if it is malformed.
func (fb *twccFeedback) parse(p []byte) bool {
	if len(p) < 20 {
		return false
	}
	fb.baseSeq = binary.BigEndian.Uint16(p[12:14])
	count := int(binary.BigEndian.Uint16(p[14:16]))
	fb.refTime = int64(uint32(p[16])<<16|uint32(p[17])<<8|uint32(p[18])) * 64_000
	fb.fbCount = p[19]
	if count == 0 || count > twccMaxStatus {
		return false
	}
	fb.status = fb.status[:0]
	i := 20
	for len(fb.status) < count {
		if i+2 > len(p) {
			return false
		}
		c := binary.BigEndian.Uint16(p[i : i+2])
		i += 2
		left := count - len(fb.status)
		switch {
		case c&0x8000 == 0: // run length
			sym := uint8(c >> 13 & 3)
			n := min(int(c&0x1fff), left)
			for range n {
				fb.status = append(fb.status, sym)
			}
		case c&0x4000 == 0: // 14 one-bit symbols
			for k := 13; k >= 0 && left > 0; k-- {
				fb.status = append(fb.status, uint8(c>>k&1))
				left--
			}
		default: // 7 two-bit symbols
			for k := 6; k >= 0 && left > 0; k-- {
				fb.status = append(fb.status, uint8(c>>(2*k)&3))
				left--
			}
		}
	}
	fb.arrival = fb.arrival[:0]
	var t int64
	for _, s := range fb.status {
		switch s {
		case twccSmallDelta:
			if i+1 > len(p) {
				return false
			}
			t += int64(p[i]) * 250
			i++
		case twccLargeDelta:
			if i+2 > len(p) {
				return false
			}
			t += int64(int16(binary.BigEndian.Uint16(p[i:i+2]))) * 250
			i += 2
		case twccNotReceived:
		default:
			return false // reserved symbol
		}
		fb.arrival = append(fb.arrival, t)
	}
	return true
}
