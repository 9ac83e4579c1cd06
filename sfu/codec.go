package sfu

import (
	"errors"
	"strings"
)

// CodecKind is a codec family, as far as payload inspection cares.
type CodecKind uint8

// Codec families.
const (
	CodecUnknown CodecKind = iota
	CodecOpus
	CodecVP8
	CodecVP9
	CodecH264
	CodecAV1
	CodecH265
)

var codecNames = [...]string{"unknown", "opus", "VP8", "VP9", "H264", "AV1", "H265"}

func (k CodecKind) String() string {
	if int(k) < len(codecNames) {
		return codecNames[k]
	}
	return "unknown"
}

// CodecKindFromMime maps a MIME type such as "video/VP8" or "audio/opus"
// (case-insensitive) to its codec family.
func CodecKindFromMime(mime string) CodecKind {
	switch {
	case strings.EqualFold(mime, "audio/opus"):
		return CodecOpus
	case strings.EqualFold(mime, "video/vp8"):
		return CodecVP8
	case strings.EqualFold(mime, "video/vp9"):
		return CodecVP9
	case strings.EqualFold(mime, "video/h264"):
		return CodecH264
	case strings.EqualFold(mime, "video/av1"):
		return CodecAV1
	case strings.EqualFold(mime, "video/h265"), strings.EqualFold(mime, "video/hevc"):
		return CodecH265
	}
	return CodecUnknown
}

// canonicalMimes are the MIME types as WebRTC's registry and pion spell them.
var canonicalMimes = [...]string{"audio/opus", "video/VP8", "video/VP9", "video/H264", "video/AV1", "video/H265",
	"audio/red", "audio/PCMU", "audio/PCMA", "audio/G722"}

// CanonicalMimeType spells a codec's MIME type the usual way ("audio/opus",
// "video/VP8") whatever case the client's SDP used: GStreamer's webrtcbin
// writes "OPUS/48000/2", and Track.codec would otherwise say "audio/OPUS"
// to clients that compare it with "audio/opus".
func CanonicalMimeType(mime string) string {
	for _, c := range canonicalMimes {
		if strings.EqualFold(c, mime) {
			return c
		}
	}
	return mime
}

// IsKeyframeStart reports whether this RTP payload is the first packet of a
// keyframe, i.e. a point where a decoder (or a layer switch) can start.
// Audio and unknown codecs never have keyframes. It never panics on
// malformed input and does not allocate.
func IsKeyframeStart(kind CodecKind, payload []byte) bool {
	switch kind {
	case CodecVP8:
		return vp8KeyframeStart(payload)
	case CodecVP9:
		return vp9KeyframeStart(payload)
	case CodecH264:
		return h264KeyframeStart(payload)
	case CodecH265:
		return h265KeyframeStart(payload)
	case CodecAV1:
		return av1KeyframeStart(payload)
	}
	return false
}

// vp8KeyframeStart: start of partition 0 (S=1, PID=0) whose VP8 frame tag
// has the inverse key frame bit P clear.
func vp8KeyframeStart(p []byte) bool {
	d, ok := parseVP8(p)
	if !ok || !d.start || d.partID != 0 || len(p) < d.size+3 {
		return false // the 3-byte frame tag is always in the first packet
	}
	return p[d.size]&0x01 == 0
}

// VP8FrameSize returns the width and height from a VP8 keyframe's first
// packet: the frame tag is followed by the start code 9d 01 2a and two
// little-endian 16-bit fields whose low 14 bits are width and height (the
// top two bits are the upscaling mode).
func VP8FrameSize(payload []byte) (width, height int, ok bool) {
	if !vp8KeyframeStart(payload) {
		return 0, 0, false
	}
	d, _ := parseVP8(payload)
	h := payload[d.size:]
	if len(h) < 10 || h[3] != 0x9d || h[4] != 0x01 || h[5] != 0x2a {
		return 0, 0, false
	}
	width = int(uint16(h[6])|uint16(h[7])<<8) & 0x3fff
	height = int(uint16(h[8])|uint16(h[9])<<8) & 0x3fff
	return width, height, true
}

// vp9KeyframeStart reads the VP9 payload descriptor (RFC 9628): a keyframe
// starts where a frame begins (B) that is not inter-picture predicted (P=0)
// in spatial layer 0. Without layer indices (L=0) the only layer is 0.
func vp9KeyframeStart(p []byte) bool {
	if len(p) < 1 {
		return false
	}
	b := p[0]
	const bitI, bitP, bitL, bitB = 0x80, 0x40, 0x20, 0x08
	if b&bitB == 0 || b&bitP != 0 {
		return false
	}
	i := 1
	if b&bitI != 0 {
		if len(p) <= i {
			return false
		}
		if p[i]&0x80 != 0 { // M: 15-bit picture id
			i++
		}
		i++
	}
	if b&bitL == 0 {
		return len(p) > i
	}
	if len(p) <= i {
		return false
	}
	sid := (p[i] >> 1) & 0x07
	return sid == 0
}

// H.264 NAL unit types (RFC 6184).
const (
	h264IDR   = 5
	h264SPS   = 7
	h264STAPA = 24
	h264STAPB = 25
	h264FUA   = 28
	h264FUB   = 29
)

func h264KeyNAL(t byte) bool { return t == h264IDR || t == h264SPS }

// errBadPayload: a payload a down track will not forward (malformed).
var errBadPayload = errors.New("malformed payload")

// ValidH264Payload reports whether an H.264 RTP payload (RFC 6184,
// packetization mode 0 or 1) is well formed: the forbidden bit clear, a
// defined NAL type, a STAP-A whose units fit exactly, a FU-A with its FU
// header and some data, a single NAL unit with a body. Down tracks drop the rest (a broken or hostile
// publisher's garbage) instead of handing it to every subscriber's decoder;
// VP8 and VP9 payloads get the same treatment from their descriptor
// parsers. It does not allocate.
func ValidH264Payload(p []byte) bool {
	if len(p) == 0 || p[0]&0x80 != 0 {
		return false
	}
	switch t := p[0] & 0x1f; {
	case t == 0 || t >= 30:
		return false // unspecified
	case t == h264STAPA:
		i := 1
		for i < len(p) {
			if i+2 >= len(p) {
				return false
			}
			size := int(p[i])<<8 | int(p[i+1])
			i += 2
			if size == 0 || i+size > len(p) || p[i]&0x80 != 0 || p[i]&0x1f == 0 {
				return false
			}
			i += size
		}
		return true
	case t == h264FUA:
		// start and end in one fragment, or no NAL type: not a fragment
		return len(p) >= 3 && p[1]&0xc0 != 0xc0 && p[1]&0x1f != 0
	case t == h264STAPB || t == 26 || t == 27 || t == h264FUB:
		return false // interleaved mode (2), which Starling never negotiates
	case t == 10 || t == 11:
		return true // end of sequence / stream: the header is all there is
	}
	return len(p) >= 2 // every other NAL unit has a body (at least its RBSP trailing bits)
}

// h264KeyframeStart: an IDR slice or SPS as a single NAL unit, inside a
// STAP-A/B aggregate, or at the start of a FU-A/B fragment.
func h264KeyframeStart(p []byte) bool {
	if len(p) < 1 {
		return false
	}
	switch t := p[0] & 0x1f; t {
	case h264STAPA, h264STAPB:
		i := 1
		if t == h264STAPB {
			i += 2 // DON
		}
		for i+2 < len(p) {
			size := int(p[i])<<8 | int(p[i+1])
			i += 2
			if size == 0 || i+size > len(p) {
				return false
			}
			if h264KeyNAL(p[i] & 0x1f) {
				return true
			}
			i += size
		}
		return false
	case h264FUA, h264FUB:
		return len(p) >= 2 && p[1]&0x80 != 0 && h264KeyNAL(p[1]&0x1f)
	default:
		return h264KeyNAL(t)
	}
}

// H.265 NAL unit types (RFC 7798, H.265 table 7-1).
const (
	h265BLAWLP   = 16 // first IRAP type
	h265CRA      = 21 // last IRAP type
	h265VPS      = 32
	h265SPS      = 33
	h265AP       = 48
	h265FU       = 49
	h265NALUHdrs = 2
)

// h265KeyNAL: any IRAP picture (BLA, IDR, CRA: decoding can start there)
// or the parameter sets that precede one.
func h265KeyNAL(t byte) bool {
	return (t >= h265BLAWLP && t <= h265CRA) || t == h265VPS || t == h265SPS
}

// h265KeyframeStart assumes sprop-max-don-diff is 0, so no DONL/DOND
// fields are present (as in WebRTC).
func h265KeyframeStart(p []byte) bool {
	if len(p) < h265NALUHdrs {
		return false
	}
	switch t := (p[0] >> 1) & 0x3f; t {
	case h265AP:
		i := h265NALUHdrs
		for i+2 < len(p) {
			size := int(p[i])<<8 | int(p[i+1])
			i += 2
			if size < h265NALUHdrs || i+size > len(p) {
				return false
			}
			if h265KeyNAL((p[i] >> 1) & 0x3f) {
				return true
			}
			i += size
		}
		return false
	case h265FU:
		return len(p) >= 3 && p[2]&0x80 != 0 && h265KeyNAL(p[2]&0x3f)
	default:
		return h265KeyNAL(t)
	}
}

// av1KeyframeStart reads the AV1 RTP aggregation header: N marks the first
// packet of a coded video sequence; failing that, a sequence header OBU as
// the first OBU (not a continuation, Z=0) also starts a keyframe.
func av1KeyframeStart(p []byte) bool {
	if len(p) < 2 {
		return false
	}
	agg := p[0]
	const bitZ, bitN = 0x80, 0x08
	if agg&bitN != 0 {
		return true
	}
	if agg&bitZ != 0 {
		return false
	}
	i := 1
	if w := (agg >> 4) & 0x03; w != 1 {
		// W=0: every element has a length; W>1: all but the last. Either
		// way the first one has a LEB128 length before the OBU header.
		for n := 0; ; n++ {
			if i >= len(p) || n == 8 {
				return false
			}
			b := p[i]
			i++
			if b&0x80 == 0 {
				break
			}
		}
	}
	if i >= len(p) {
		return false
	}
	const obuSequenceHeader = 1
	return (p[i]>>3)&0x0f == obuSequenceHeader
}
