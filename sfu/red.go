package sfu

import (
	"strconv"
	"strings"

	"github.com/pion/webrtc/v4"
)

// RED (RFC 2198) carries an audio frame together with copies of earlier
// ones. Browsers use it for Opus ("audio/red" with fmtp "111/111": two
// blocks of payload type 111). A packet is a list of block headers, then the
// blocks, oldest first, the primary (newest) last:
//
//	redundant block header: F=1 | PT(7) | timestamp offset(14) | length(10)
//	last (primary) header:  F=0 | PT(7)
//
// Forwarding RED needs no rewriting of the blocks' timestamp offsets (they
// are relative to the packet's timestamp, which the munger only shifts);
// only the inner payload type may differ between publisher and subscriber.

// MimeTypeRED is the RED audio codec.
const MimeTypeRED = "audio/red"

// redBlocks walks a RED payload. It returns the offset of the first block's
// data and the primary block's payload type, offset and length; ok=false for
// a malformed payload. It never reads past p and does not allocate.
func redBlocks(p []byte) (dataStart int, primaryPT uint8, primaryStart int, ok bool) {
	i, redundant := 0, 0
	for {
		if i >= len(p) {
			return 0, 0, 0, false
		}
		if p[i]&0x80 == 0 { // the primary's one-byte header ends the list
			primaryPT = p[i] & 0x7f
			i++
			break
		}
		if i+4 > len(p) {
			return 0, 0, 0, false
		}
		redundant += int(p[i+2]&0x03)<<8 | int(p[i+3])
		i += 4
	}
	if i+redundant > len(p) {
		return 0, 0, 0, false
	}
	return i, primaryPT, i + redundant, true
}

// redPrimary returns the primary (newest) block of a RED payload: what a
// subscriber without RED gets. It is a slice of p.
func redPrimary(p []byte) ([]byte, bool) {
	_, _, start, ok := redBlocks(p)
	if !ok {
		return nil, false
	}
	return p[start:], true
}

// redRewritePT copies a RED payload into dst with every block's payload
// type set to pt; n=0 when p is malformed or dst too small.
func redRewritePT(dst, p []byte, pt uint8) int {
	dataStart, _, _, ok := redBlocks(p)
	if !ok || len(dst) < len(p) {
		return 0
	}
	n := copy(dst, p)
	for i := 0; i < dataStart; {
		dst[i] = dst[i]&0x80 | pt&0x7f
		if dst[i]&0x80 == 0 {
			break
		}
		i += 4
	}
	return n
}

// redInnerPT reads the payload type of the blocks from a RED fmtp line such
// as "111/111"; ok=false when it is missing or not one payload type.
func redInnerPT(fmtp string) (uint8, bool) {
	first, _, _ := strings.Cut(strings.TrimSpace(fmtp), "/")
	pt, err := strconv.ParseUint(first, 10, 7)
	if err != nil {
		return 0, false
	}
	for _, s := range strings.Split(fmtp, "/") {
		if strings.TrimSpace(s) != first {
			return 0, false // mixed block types: not Opus-only RED
		}
	}
	return uint8(pt), true
}

// redMode is how a down track forwards a RED source.
type redMode uint8

const (
	redNone    redMode = iota // not RED, or RED forwarded unchanged
	redRewrite                // RED, with the blocks' payload type set to the subscriber's Opus
	redUnwrap                 // the subscriber has no RED: send the primary Opus frame
)

// redFor decides how to forward a source codec to a subscriber that
// negotiated codecs, given the codec matched by mime type (nil if none):
// RED to a subscriber without RED is unwrapped to Opus (if it has Opus),
// and RED whose block payload type differs between the two sides is
// rewritten. pt is the subscriber's Opus payload type.
func redFor(source webrtc.RTPCodecParameters, matched *webrtc.RTPCodecParameters, negotiated []webrtc.RTPCodecParameters) (redMode, uint8) {
	if !strings.EqualFold(source.MimeType, MimeTypeRED) {
		return redNone, 0
	}
	opus := redOpus(negotiated)
	if matched == nil {
		if opus.MimeType == "" {
			return redNone, 0
		}
		return redUnwrap, uint8(opus.PayloadType)
	}
	in, ok1 := redInnerPT(source.SDPFmtpLine)
	out, ok2 := redInnerPT(matched.SDPFmtpLine)
	if !ok2 && opus.MimeType != "" {
		out, ok2 = uint8(opus.PayloadType), true
	}
	if ok1 && ok2 && in != out {
		return redRewrite, out
	}
	return redNone, 0
}

// redOpus finds Opus among negotiated codecs (MimeType "" if absent).
func redOpus(negotiated []webrtc.RTPCodecParameters) webrtc.RTPCodecParameters {
	for _, c := range negotiated {
		if strings.EqualFold(c.MimeType, webrtc.MimeTypeOpus) {
			return c
		}
	}
	return webrtc.RTPCodecParameters{}
}

// redPayload applies the down track's RED mode to a payload; ok=false to
// drop a malformed one. Call with d.mu held.
func (d *DownTrack) redPayload(p []byte) ([]byte, bool) {
	switch d.red {
	case redUnwrap:
		primary, ok := redPrimary(p)
		return primary, ok && len(primary) > 0
	case redRewrite:
		n := redRewritePT(d.redbuf, p, d.redPT)
		return d.redbuf[:n], n > 0
	}
	return p, true
}

// REDPrimary returns the primary (newest) Opus block of a RED payload, a
// slice of p: what a mixer decodes from a publisher that sends RED.
func REDPrimary(p []byte) ([]byte, bool) { return redPrimary(p) }
