package sfu

import (
	"sync/atomic"

	"github.com/starling-rtc/starling/internal/bitstream"
)

// layerSize is a video layer's picture size as its keyframes tell it (the
// VP8 keyframe header, the H.264 SPS). A simulcast publisher need not say
// the sizes of its encodings (a WHIP client has no way to), and without
// them a subscriber's maxWidth/maxHeight could not cap anything: every
// layer "fitted" and the subscriber got the top one.
type layerSize struct {
	wh      atomic.Uint32 // width<<16 | height; 0 = not seen yet
	scratch []byte        // the H.264 SPS unescaped; only the layer's read goroutine uses it
}

// observe reads the size from a packet that starts a keyframe (others are
// ignored at the cost of a few byte compares) and reports whether it changed.
// It does not allocate once the scratch buffer has grown to an SPS.
func (s *layerSize) observe(kind CodecKind, payload []byte) bool {
	var w, h int
	var ok bool
	switch kind {
	case CodecVP8:
		w, h, ok = VP8FrameSize(payload)
	case CodecVP9:
		w, h, ok = vp9FrameSize(payload)
	case CodecH264:
		if nal := h264SPSOf(payload); nal != nil {
			w, h, ok = bitstream.H264SPSSize(nal, &s.scratch)
		}
	}
	if !ok || w <= 0 || h <= 0 || w > 0xffff || h > 0xffff {
		return false
	}
	v := uint32(w)<<16 | uint32(h)
	return s.wh.Swap(v) != v
}

// size is the latest size seen, 0, 0 before any.
func (s *layerSize) size() (w, h int) {
	v := s.wh.Load()
	return int(v >> 16), int(v & 0xffff)
}

// vp9FrameSize reads the size a VP9 keyframe's first packet carries in the
// payload descriptor's scalability structure (RFC 9628: V=1 with Y=1, as
// libwebrtc and GStreamer send on keyframes), that of its top spatial
// layer. A keyframe without one tells nothing.
func vp9FrameSize(p []byte) (w, h int, ok bool) {
	const bitV, bitY = 0x02, 0x10
	if !vp9KeyframeStart(p) || p[0]&bitV == 0 {
		return 0, 0, false
	}
	d, ok := parseVP9(p) // a keyframe (P=0) has no reference indices
	if !ok || len(p) <= d.size {
		return 0, 0, false
	}
	ss := p[d.size]
	if ss&bitY == 0 {
		return 0, 0, false
	}
	n := int(ss>>5) + 1 // spatial layers
	top := d.size + 1 + 4*(n-1)
	if len(p) < top+4 {
		return 0, 0, false
	}
	return int(p[top])<<8 | int(p[top+1]), int(p[top+2])<<8 | int(p[top+3]), true
}

// h264SPSOf returns the SPS NAL unit a payload carries whole (a single NAL
// unit packet, or a unit of a STAP-A), nil if none.
func h264SPSOf(p []byte) []byte {
	if len(p) < 1 {
		return nil
	}
	switch p[0] & 0x1f {
	case h264SPS:
		return p
	case h264STAPA:
		for i := 1; i+2 < len(p); {
			size := int(p[i])<<8 | int(p[i+1])
			i += 2
			if size == 0 || i+size > len(p) {
				return nil
			}
			if p[i]&0x1f == h264SPS {
				return p[i : i+size]
			}
			i += size
		}
	}
	return nil
}

// LayerSize is the picture size of a layer from its latest keyframe
// (VP8, VP9, H.264), 0, 0 when unknown (no keyframe yet, another codec).
func (r *Receiver) LayerSize(idx int8) (w, h int) {
	if idx < 0 || idx >= MaxLayers {
		return 0, 0
	}
	r.mu.Lock()
	l := r.layer[idx]
	r.mu.Unlock()
	if l == nil {
		return 0, 0
	}
	return l.size.size()
}
