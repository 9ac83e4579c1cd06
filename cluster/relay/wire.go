package relay

import "encoding/binary"

// Every relay datagram starts with a 12-byte prefix, then one SRTP or
// SRTCP packet (docs/cluster-relay.md):
//
//	0      version (1)
//	1      kind: 0 = SRTP, 1 = SRTCP
//	2..7   the sender's epoch (selects the keys)
//	8..11  SRTP: the stream's rollover counter (the high bits of the
//	       extended sequence number); SRTCP: zero
//
// The prefix is not authenticated by itself, but every field of it selects
// the key or the nonce: a changed byte makes authentication fail.
const (
	wireVersion = 1
	kindRTP     = 0
	kindRTCP    = 1
	epochLen    = 6
	prefixLen   = 12
)

// Sizes. A relayed RTP packet is a 12-byte header (no extensions, no CSRC)
// and the publisher's payload; the AES-GCM tag adds 16.
const (
	rtpHeaderLen = 12
	gcmTagLen    = 16
	maxPayload   = 1500 - rtpHeaderLen
	slotSize     = prefixLen + rtpHeaderLen + maxPayload + gcmTagLen // 1528
	readBufSize  = 2048
)

func putPrefix(b []byte, kind byte, e *epoch, roc uint32) {
	b[0] = wireVersion
	b[1] = kind
	copy(b[2:2+epochLen], e[:])
	binary.BigEndian.PutUint32(b[8:12], roc)
}

// SSRCs: an export's layers are base+0, base+1, base+2; bases are multiples
// of 4, so a layer's SSRC names both its export and its layer.
func splitSSRC(ssrc uint32) (base uint32, layer int8) { return ssrc &^ 3, int8(ssrc & 3) }

// controlSSRC is the sender SSRC of the RTCP a node sends for itself (NACK,
// PLI, layer wishes): bases are never below 4.
const controlSSRC = 1

// Application-defined RTCP (RFC 3550 APP, name "STRL") carries what
// standard RTCP has no packet for; the subtype says which.
const appName = "STRL"

const (
	appStatus = 1 // origin -> edge, SSRC = base: present, live and sent layer masks
	appWish   = 2 // edge -> origin, SSRC = base: the layers the edge's sinks want
	appClock  = 3 // origin -> edge, SSRC = base+layer, after an SR: origin time, publisher clock offset
)

// The relay's own RTP header extensions (one-byte form, RFC 8285); the
// publisher's are not relayed.
//   - resume (id 1, one byte): the first packet of a layer after packets
//     that were not sent (the layer was off); the edge does not NACK the gap.
//   - audio level (id 2, one byte, RFC 6464): the publisher's level, for
//     the edge's active speaker detection.
const (
	resumeExtID = 1
	levelExtID  = 2
)

var resumePayload = []byte{1}
