package sfu

import (
	"testing"

	"github.com/starling-rtc/starling/internal/bitstream"
)

// A layer's size comes from its keyframes: a VP8 keyframe header, an H.264
// SPS sent alone or in a STAP-A; other packets leave it as it was, and
// reading it allocates nothing once the SPS scratch has grown. (Not
// parallel: AllocsPerRun.)
func TestLayerSizeFromKeyframes(t *testing.T) {
	vp8 := func(key bool, w, h int) []byte {
		p := []byte{0x10, 0x50, 0x01, 0x00, 0x9d, 0x01, 0x2a, byte(w), byte(w >> 8), byte(h), byte(h >> 8), 0, 0}
		if !key {
			p[1] |= 1
		}
		return p
	}
	var s layerSize
	if s.observe(CodecVP8, vp8(false, 640, 360)) || s.observe(CodecVP8, []byte{0x10}) {
		t.Fatal("a delta frame or a short packet told a size")
	}
	if !s.observe(CodecVP8, vp8(true, 640, 360)) || s.observe(CodecVP8, vp8(true, 640, 360)) {
		t.Fatal("the first keyframe's size is a change, the same size again is not")
	}
	if w, h := s.size(); w != 640 || h != 360 {
		t.Fatalf("VP8 size %dx%d, want 640x360", w, h)
	}
	if !s.observe(CodecVP8, vp8(true, 320, 180)) {
		t.Fatal("a new size is a change")
	}

	sps := bitstream.H264SPS(1280, 720, 0)
	pps := []byte{0x68, 0xce, 0x3c, 0x80}
	stap := []byte{24, byte(len(sps) >> 8), byte(len(sps))}
	stap = append(stap, sps...)
	stap = append(stap, 0, byte(len(pps)))
	stap = append(stap, pps...)
	var h264 layerSize
	for _, p := range [][]byte{{0x65, 0x88}, {28, 0x85, 1}, pps, {24, 0, 9, 0x67}} {
		if h264.observe(CodecH264, p) {
			t.Fatalf("%x told a size", p)
		}
	}
	if !h264.observe(CodecH264, stap) {
		t.Fatal("the SPS in a STAP-A told no size")
	}
	if w, h := h264.size(); w != 1280 || h != 720 {
		t.Fatalf("H.264 size %dx%d, want 1280x720", w, h)
	}
	if !h264.observe(CodecH264, bitstream.H264SPS(640, 360, 0)) {
		t.Fatal("a lone SPS of another size told no change")
	}
	if allocs := testing.AllocsPerRun(100, func() { h264.observe(CodecH264, stap) }); allocs != 0 {
		t.Fatalf("reading an SPS allocates %.0f times per packet", allocs)
	}
	// VP9: I, B, V set (P clear: a keyframe), a 15-bit picture id, then
	// the scalability structure: N_S=1 (two spatial layers), Y=1, and
	// their sizes; the top one counts.
	vp9 := []byte{0x8a, 0x80, 0x01, 0x30, 0x01, 0x40, 0x00, 0xb4, 0x02, 0x80, 0x01, 0x68, 0, 0}
	var v9 layerSize
	if !v9.observe(CodecVP9, vp9) {
		t.Fatal("the VP9 scalability structure told no size")
	}
	if w, h := v9.size(); w != 640 || h != 360 {
		t.Fatalf("VP9 size %dx%d, want 640x360", w, h)
	}
	noY := append([]byte{}, vp9...)
	noY[3] = 0x20 // N_S=1, Y=0
	delta := append([]byte{}, vp9...)
	delta[0] |= 0x40 // P: inter-picture predicted
	for _, p := range [][]byte{noY, delta, vp9[:8], {0x88, 0x80}} {
		if (&layerSize{}).observe(CodecVP9, p) {
			t.Fatalf("%x told a size", p)
		}
	}
	for _, whole := range [][]byte{vp9, stap, vp8(true, 640, 360)} { // no prefix reads past its end
		for i := range whole {
			for _, k := range []CodecKind{CodecVP8, CodecVP9, CodecH264} {
				(&layerSize{}).observe(k, whole[:i])
			}
		}
	}
	if s.observe(CodecAV1, vp8(true, 1, 1)) {
		t.Fatal("AV1 is not read")
	}
}
