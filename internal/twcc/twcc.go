// Package twcc holds what Starling's two ends of transport-wide congestion
// control share about the transport-wide sequence number header extension:
// finding its negotiated id, and reading it straight from a packet's bytes.
// The server numbers the packets it sends (sfu/bweio.go); the Go client
// records the numbers it receives for its feedback (client/twcc.go). Both
// run once per packet, so neither may allocate.
package twcc

import (
	"encoding/binary"

	"github.com/pion/interceptor"
	"github.com/pion/sdp/v3"
)

// ExtensionID is the id a stream negotiated for the transport-wide
// sequence number extension, or 0 when it did not negotiate one.
func ExtensionID(info *interceptor.StreamInfo) uint8 {
	for _, e := range info.RTPHeaderExtensions {
		if e.URI == sdp.TransportCCURI && e.ID > 0 && e.ID < 256 {
			return uint8(e.ID)
		}
	}
	return 0
}

// SequenceNumber reads the transport-wide sequence number (extension id)
// of a marshalled RTP packet, without allocating: RFC 8285's one-byte and
// two-byte header extensions. ok is false when the packet is malformed or
// does not carry the extension.
func SequenceNumber(b []byte, id uint8) (seq uint16, ok bool) {
	if len(b) < 12 || b[0]>>6 != 2 || b[0]&0x10 == 0 {
		return 0, false
	}
	off := 12 + 4*int(b[0]&0x0f)
	if len(b) < off+4 {
		return 0, false
	}
	profile := binary.BigEndian.Uint16(b[off:])
	end := off + 4 + 4*int(binary.BigEndian.Uint16(b[off+2:]))
	if len(b) < end {
		return 0, false
	}
	ext := b[off+4 : end]
	switch {
	case profile == 0xBEDE: // one-byte headers
		for i := 0; i < len(ext); {
			if ext[i] == 0 { // padding
				i++
				continue
			}
			eid, l := ext[i]>>4, int(ext[i]&0x0f)+1
			if eid == 15 {
				return 0, false // reserved: stop here
			}
			if i+1+l > len(ext) {
				return 0, false
			}
			if eid == id {
				return seqOf(ext[i+1 : i+1+l])
			}
			i += 1 + l
		}
	case profile&0xfff0 == 0x1000: // two-byte headers
		for i := 0; i < len(ext); {
			if ext[i] == 0 {
				i++
				continue
			}
			if i+2 > len(ext) {
				return 0, false
			}
			eid, l := ext[i], int(ext[i+1])
			if i+2+l > len(ext) {
				return 0, false
			}
			if eid == id {
				return seqOf(ext[i+2 : i+2+l])
			}
			i += 2 + l
		}
	}
	return 0, false
}

func seqOf(v []byte) (uint16, bool) {
	if len(v) < 2 {
		return 0, false
	}
	return binary.BigEndian.Uint16(v), true
}
