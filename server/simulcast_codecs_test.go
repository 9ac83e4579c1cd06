package server_test

import (
	"testing"
	"time"

	"github.com/pion/webrtc/v4"
	"github.com/starling-rtc/starling/internal/bitstream"
)

// Synthetic VP9, H.264 and AV1 frames whose keyframes carry their size the
// way real streams do: VP9 in the payload descriptor's scalability
// structure, H.264 in the SPS, AV1 in the sequence header OBU.

// h264Height reads the height from a keyframe's first packet, an SPS.
func h264Height(p []byte) (int, bool) {
	var scratch []byte
	_, h, ok := bitstream.H264SPSSize(p, &scratch)
	return h, ok
}

var h264Sim = simCodec{
	mime: webrtc.MimeTypeH264,
	payload: func(_ uint16, part int, key bool, w, h int, big bool) []byte {
		var b []byte
		switch {
		case key && part == 0:
			return bitstream.H264SPS(w, h, 0) // a keyframe starts with its SPS
		case key:
			b = []byte{0x65} // IDR slice
		default:
			b = []byte{0x41} // non-IDR slice
		}
		return append(b, make([]byte, simBody(big))...)
	},
	height: h264Height,
}

// VP9 payload descriptor bits (RFC 9628).
const vp9I, vp9P, vp9B, vp9V = 0x80, 0x40, 0x08, 0x02

var vp9Sim = simCodec{
	mime: webrtc.MimeTypeVP9,
	payload: func(pid uint16, part int, key bool, w, h int, big bool) []byte {
		b0 := byte(vp9I)
		if !key {
			b0 |= vp9P
		}
		if part == 0 {
			b0 |= vp9B
			if key {
				b0 |= vp9V
			}
		}
		b := []byte{b0, 0x80 | byte(pid>>8), byte(pid)}
		if part == 0 && key { // scalability structure: one layer, its size
			b = append(b, 0x10, byte(w>>8), byte(w), byte(h>>8), byte(h))
		}
		return append(b, make([]byte, simBody(big))...)
	},
	height: func(p []byte) (int, bool) {
		if len(p) < 8 || p[0]&(vp9B|vp9V) != vp9B|vp9V || p[0]&(vp9P|vp9I) != vp9I || p[1]&0x80 == 0 {
			return 0, false
		}
		ss := p[3:]
		if ss[0]&0x10 == 0 { // Y: sizes present
			return 0, false
		}
		return int(ss[3])<<8 | int(ss[4]), true
	},
	pid: func(p []byte) (int, bool) { // on frame starts (B)
		if len(p) < 3 || p[0]&(vp9I|vp9B) != vp9I|vp9B || p[1]&0x80 == 0 {
			return 0, false
		}
		return int(p[1]&0x7f)<<8 | int(p[2]), true
	},
}

// av1SequenceHeader is a sequence header OBU payload for w×h.
func av1SequenceHeader(w, h int) []byte {
	bw := &bitstream.Writer{}
	bw.Bits(0, 3)  // seq_profile
	bw.Bit(0)      // still_picture
	bw.Bit(0)      // reduced_still_picture_header
	bw.Bit(0)      // timing_info_present_flag
	bw.Bit(0)      // initial_display_delay_present_flag
	bw.Bits(0, 5)  // operating_points_cnt_minus_1
	bw.Bits(0, 12) // operating_point_idc[0]
	bw.Bits(8, 5)  // seq_level_idx[0] (4.0)
	bw.Bit(0)      // seq_tier[0]
	bw.Bits(15, 4) // frame_width_bits_minus_1
	bw.Bits(15, 4) // frame_height_bits_minus_1
	bw.Bits(uint(w-1), 16)
	bw.Bits(uint(h-1), 16)
	return bw.Bytes()
}

var av1Sim = simCodec{
	mime: webrtc.MimeTypeAV1,
	payload: func(_ uint16, part int, key bool, w, h int, big bool) []byte {
		if key && part == 0 {
			// Aggregation header W=1 (one OBU, no length), N: a new coded
			// video sequence; then the sequence header OBU.
			return append([]byte{0x18, 1 << 3}, av1SequenceHeader(w, h)...)
		}
		agg := byte(0x10)
		return append([]byte{agg, 6 << 3}, make([]byte, simBody(big))...) // a frame OBU
	},
	height: func(p []byte) (int, bool) {
		if len(p) < 2 || p[0] != 0x18 || p[1]>>3&0x0f != 1 {
			return 0, false
		}
		r := bitstream.NewReader(p[2:])
		if _, ok := r.Bits(3 + 1 + 1 + 1 + 1 + 5 + 12 + 5 + 1 + 4 + 4 + 16); !ok {
			return 0, false
		}
		h, ok := r.Bits(16)
		return int(h) + 1, ok
	},
}

func simBody(big bool) int {
	if big {
		return 1100
	}
	return 300
}

// TestSimulcastCodecs: VP9, H.264 and AV1 simulcast publishers, as for VP8
// in TestSimulcastLayerSelection: a subscriber capped at 360p receives only
// 360p keyframes (read from the stream itself), raising the cap switches it
// to 720p, and sequence numbers, timestamps and (VP9) picture ids stay
// continuous.
func TestSimulcastCodecs(t *testing.T) {
	parallelLong(t) // 5-6 s: started late, it ended the light phase alone
	codecs := []simCodec{vp9Sim, h264Sim, av1Sim}
	names := make([]string, len(codecs))
	for i, c := range codecs {
		names[i] = c.mime
	}
	sideBySide(t, names, func(t *testing.T, i int) {
		codec := codecs[i]
		srv := startServer(t, nil)
		sub := join(t, srv, "sim", "viewer")
		v := watchVideoCodec(sub, codec)
		pub := join(t, srv, "sim", "camera")
		f := publishSimulcastCodec(t, pub, codec)
		if f.published.Codec != codec.mime {
			t.Fatalf("published codec %q, want %q", f.published.Codec, codec.mime)
		}

		v.waitHeight(t, 10*time.Second, 720)
		capAndRaise(t, sub, v, f.published.ID, nil)

		v.mu.Lock()
		defer v.mu.Unlock()
		if v.seqBreaks != 0 || v.tsBack != 0 || v.pidBreaks != 0 {
			t.Fatalf("stream not continuous across switches: %d seq breaks, %d timestamps backwards, %d picture id breaks (in %d packets)",
				v.seqBreaks, v.tsBack, v.pidBreaks, v.packets)
		}
	})
}
