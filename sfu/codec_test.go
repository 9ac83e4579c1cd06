package sfu

import "testing"

func TestCodecKindFromMime(t *testing.T) {
	for mime, want := range map[string]CodecKind{
		"audio/opus": CodecOpus, "audio/OPUS": CodecOpus, "video/VP8": CodecVP8, "video/vp8": CodecVP8,
		"video/VP9": CodecVP9, "video/H264": CodecH264, "VIDEO/h264": CodecH264, "video/AV1": CodecAV1,
		"video/H265": CodecH265, "video/HEVC": CodecH265, "audio/PCMU": CodecUnknown, "": CodecUnknown,
		"video/VP8 ": CodecUnknown, "audio/vp8": CodecUnknown,
	} {
		if got := CodecKindFromMime(mime); got != want {
			t.Errorf("CodecKindFromMime(%q) = %v, want %v", mime, got, want)
		}
	}
	if CodecH264.String() != "H264" || CodecKind(200).String() != "unknown" {
		t.Error("String")
	}
	if n := testing.AllocsPerRun(100, func() { CodecKindFromMime("video/H265") }); n != 0 {
		t.Errorf("%v allocs", n)
	}
}

// vp8KeyHeader is a VP8 keyframe's frame tag, start code and 640x360 with
// scaling bits set on the height, which must be masked off.
var vp8KeyHeader = []byte{0x50, 0x42, 0x00, 0x9d, 0x01, 0x2a, 0x80, 0x02, 0x68, 0x41}

func TestIsKeyframeStart(t *testing.T) {
	vp8Inter := []byte{0x31, 0x42, 0x00, 0x11}
	tests := []struct {
		name    string
		kind    CodecKind
		payload []byte
		want    bool
	}{
		{"vp8 key minimal descriptor", CodecVP8, append([]byte{0x10}, vp8KeyHeader...), true},
		{"vp8 key full descriptor", CodecVP8, buildVP8(vp8Fields{start: true, pidBits: 15, pid: 77, hasTL0: true, hasTID: true, hasKey: true}, vp8KeyHeader), true},
		{"vp8 key 7-bit pid", CodecVP8, buildVP8(vp8Fields{start: true, pidBits: 7, pid: 3}, vp8KeyHeader), true},
		{"vp8 inter frame", CodecVP8, buildVP8(vp8Fields{start: true, pidBits: 15}, vp8Inter), false},
		{"vp8 key continuation", CodecVP8, buildVP8(vp8Fields{pidBits: 15}, vp8KeyHeader), false},
		{"vp8 key other partition", CodecVP8, buildVP8(vp8Fields{start: true, partID: 1}, vp8KeyHeader), false},
		{"vp8 no frame tag", CodecVP8, buildVP8(vp8Fields{start: true, pidBits: 15}, []byte{0x50, 0x42}), false},
		{"vp8 truncated descriptor", CodecVP8, []byte{0x90, 0x80}, false},
		{"vp8 empty", CodecVP8, nil, false},

		{"vp9 key no fields", CodecVP9, []byte{0x08, 0x82}, true},
		{"vp9 key 15-bit pid, L sid 0", CodecVP9, []byte{0xa8, 0x81, 0x02, 0x00, 0x05, 0x82}, true},
		{"vp9 key 7-bit pid, flexible, sid 0", CodecVP9, []byte{0xb8, 0x12, 0x00, 0x82}, true},
		{"vp9 inter (P)", CodecVP9, []byte{0xc8, 0x12, 0x82}, false},
		{"vp9 not frame start", CodecVP9, []byte{0x80, 0x12, 0x82}, false},
		{"vp9 key spatial layer 1", CodecVP9, []byte{0xa8, 0x12, 0x02, 0x05, 0x82}, false},
		{"vp9 truncated before L", CodecVP9, []byte{0xa8, 0x81, 0x02}, false},
		{"vp9 truncated pid", CodecVP9, []byte{0x88}, false},

		{"h264 IDR", CodecH264, []byte{0x65, 0x88, 0x84}, true},
		{"h264 SPS", CodecH264, []byte{0x67, 0x42, 0xc0, 0x1f}, true},
		{"h264 PPS", CodecH264, []byte{0x68, 0xce}, false},
		{"h264 non-IDR slice", CodecH264, []byte{0x41, 0x9a}, false},
		{"h264 STAP-A SPS PPS", CodecH264, []byte{0x78, 0x00, 0x02, 0x67, 0x42, 0x00, 0x02, 0x68, 0xce}, true},
		{"h264 STAP-A IDR second", CodecH264, []byte{0x78, 0x00, 0x01, 0x06, 0x00, 0x02, 0x65, 0x88}, true},
		{"h264 STAP-A no key", CodecH264, []byte{0x78, 0x00, 0x01, 0x06, 0x00, 0x02, 0x41, 0x88}, false},
		{"h264 STAP-A bad length", CodecH264, []byte{0x78, 0x00, 0x09, 0x06, 0x65}, false},
		{"h264 STAP-B", CodecH264, []byte{0x79, 0x00, 0x00, 0x00, 0x02, 0x67, 0x42}, true},
		{"h264 FU-A IDR start", CodecH264, []byte{0x7c, 0x85, 0x88}, true},
		{"h264 FU-A IDR middle", CodecH264, []byte{0x7c, 0x05, 0x88}, false},
		{"h264 FU-A non-IDR start", CodecH264, []byte{0x7c, 0x81, 0x88}, false},
		{"h264 FU-A truncated", CodecH264, []byte{0x7c}, false},

		{"h265 IDR_W_RADL", CodecH265, []byte{0x26, 0x01, 0xaf}, true},
		{"h265 CRA", CodecH265, []byte{0x2a, 0x01, 0xaf}, true},
		{"h265 VPS", CodecH265, []byte{0x40, 0x01, 0x0c}, true},
		{"h265 trail", CodecH265, []byte{0x02, 0x01, 0xd0}, false},
		{"h265 AP VPS SPS", CodecH265, []byte{0x60, 0x01, 0x00, 0x03, 0x40, 0x01, 0x0c, 0x00, 0x03, 0x42, 0x01, 0x01}, true},
		{"h265 AP no key", CodecH265, []byte{0x60, 0x01, 0x00, 0x03, 0x02, 0x01, 0xd0}, false},
		{"h265 FU IDR start", CodecH265, []byte{0x62, 0x01, 0x93, 0xaf}, true},
		{"h265 FU IDR middle", CodecH265, []byte{0x62, 0x01, 0x13, 0xaf}, false},
		{"h265 short", CodecH265, []byte{0x26}, false},

		{"av1 N bit", CodecAV1, []byte{0x18, 0x32, 0x00}, true},
		{"av1 seq header W=1", CodecAV1, []byte{0x10, 0x0a, 0x0b, 0x00}, true},
		{"av1 seq header W=0 with length", CodecAV1, []byte{0x00, 0x03, 0x0a, 0x0b, 0x00}, true},
		{"av1 seq header W=2 long length", CodecAV1, []byte{0x20, 0x83, 0x00, 0x0a, 0x0b, 0x00}, true},
		{"av1 frame OBU", CodecAV1, []byte{0x10, 0x32, 0x00}, false},
		{"av1 continuation", CodecAV1, []byte{0x90, 0x0a, 0x00}, false},
		{"av1 unterminated length", CodecAV1, []byte{0x00, 0x80, 0x80}, false},
		{"av1 short", CodecAV1, []byte{0x08}, false},

		{"opus", CodecOpus, []byte{0x78, 0x01}, false},
		{"unknown", CodecUnknown, []byte{0x65}, false},
	}
	for _, tc := range tests {
		if got := IsKeyframeStart(tc.kind, tc.payload); got != tc.want {
			t.Errorf("%s: IsKeyframeStart(% x) = %v, want %v", tc.name, tc.payload, got, tc.want)
		}
	}
	allocs := testing.AllocsPerRun(100, func() {
		for _, tc := range tests {
			IsKeyframeStart(tc.kind, tc.payload)
		}
	})
	if allocs != 0 {
		t.Errorf("%v allocs", allocs)
	}
}

func TestVP8FrameSize(t *testing.T) {
	p := buildVP8(vp8Fields{start: true, pidBits: 15, pid: 9, hasTL0: true}, vp8KeyHeader)
	if w, h, ok := VP8FrameSize(p); !ok || w != 640 || h != 360 {
		t.Fatalf("got %d x %d, %v", w, h, ok)
	}
	if w, h, ok := VP8FrameSize(append([]byte{0x10}, 0x50, 0x42, 0x00, 0x9d, 0x01, 0x2a, 0x00, 0x05, 0xd0, 0x02)); !ok || w != 1280 || h != 720 {
		t.Fatalf("got %d x %d, %v", w, h, ok)
	}
	bad := [][]byte{
		nil,
		buildVP8(vp8Fields{start: true}, vp8KeyHeader[:9]),                                    // cut
		buildVP8(vp8Fields{start: true}, []byte{0x50, 0x42, 0, 0x9d, 0x01, 0x2b, 1, 1, 1, 1}), // start code
		buildVP8(vp8Fields{start: false}, vp8KeyHeader),                                       // not first packet
		buildVP8(vp8Fields{start: true}, []byte{0x51, 0x42, 0, 0x9d, 0x01, 0x2a, 1, 1, 1, 1}), // inter frame
	}
	for _, b := range bad {
		if w, h, ok := VP8FrameSize(b); ok {
			t.Errorf("VP8FrameSize(% x) = %d x %d", b, w, h)
		}
	}
}

func FuzzIsKeyframe(f *testing.F) {
	f.Add(uint8(CodecVP8), append([]byte{0x90, 0x80, 0x81, 0x00}, vp8KeyHeader...))
	f.Add(uint8(CodecVP9), []byte{0xa8, 0x81, 0x02, 0x00, 0x05, 0x82})
	f.Add(uint8(CodecH264), []byte{0x78, 0x00, 0x02, 0x67, 0x42, 0x00, 0x02, 0x68, 0xce})
	f.Add(uint8(CodecH265), []byte{0x60, 0x01, 0x00, 0x03, 0x40, 0x01, 0x0c})
	f.Add(uint8(CodecAV1), []byte{0x20, 0x83, 0x00, 0x0a, 0x0b, 0x00})
	f.Fuzz(func(t *testing.T, kind uint8, payload []byte) {
		k := CodecKind(kind % 8)
		key := IsKeyframeStart(k, payload)
		if k == CodecOpus || k == CodecUnknown || k > CodecH265 {
			if key {
				t.Fatal("keyframe for a codec without keyframes")
			}
		}
		w, h, ok := VP8FrameSize(payload)
		if ok && (!IsKeyframeStart(CodecVP8, payload) || w < 0 || w > 0x3fff || h < 0 || h > 0x3fff) {
			t.Fatalf("frame size %d x %d from a non-keyframe", w, h)
		}
	})
}

// Malformed H.264 payloads (issue 17, garbage from a publisher) are told
// apart from the well-formed ones browsers send.
func TestValidH264Payload(t *testing.T) {
	for _, c := range []struct {
		name string
		p    []byte
		ok   bool
	}{
		{"IDR slice", []byte{0x65, 0x88, 0x84}, true},
		{"SPS", []byte{0x67, 0x42, 0xe0, 0x1f}, true},
		{"end of stream", []byte{0x0b}, true},
		{"STAP-A SPS+PPS", []byte{0x78, 0, 2, 0x67, 0x42, 0, 2, 0x68, 0xce}, true},
		{"FU-A start", []byte{0x7c, 0x85, 0x88}, true},
		{"empty", nil, false},
		{"forbidden bit", []byte{0x85, 1, 2}, false},
		{"type 0", []byte{0x00, 1}, false},
		{"type 31", []byte{0x1f, 1}, false},
		{"slice header only", []byte{0x41}, false},
		{"STAP-A overrun", []byte{0x78, 0, 9, 0x67, 0x42}, false},
		{"STAP-A trailing byte", []byte{0x78, 0, 1, 0x67, 0x00}, false},
		{"FU-A without FU header", []byte{0x1c}, false},
		{"FU-A start and end", []byte{0x7c, 0xc5, 0x88}, false},
		{"STAP-B", []byte{0x19, 0, 0, 0, 1, 0x65}, false},
	} {
		if got := ValidH264Payload(c.p); got != c.ok {
			t.Errorf("%s (% x): %v, want %v", c.name, c.p, got, c.ok)
		}
	}
}

func TestCanonicalMimeType(t *testing.T) {
	for in, want := range map[string]string{
		"audio/OPUS": "audio/opus", "audio/opus": "audio/opus", "video/vp8": "video/VP8", "video/h264": "video/H264",
		"video/Av1": "video/AV1", "video/x-unknown": "video/x-unknown",
	} {
		if got := CanonicalMimeType(in); got != want {
			t.Errorf("CanonicalMimeType(%q) = %q, want %q", in, got, want)
		}
	}
}
