package loadgen

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/pion/rtp/codecs"
	"github.com/starling-rtc/starling/internal/testutil"
	"github.com/starling-rtc/starling/sfu"
)

func TestLayerParams(t *testing.T) {
	p := VideoParams{Bitrate: 2_500_000, FPS: 30, Width: 1280, Height: 720}
	got := layerParams(p)
	want := [3][2]int{{320, 180}, {640, 360}, {1280, 720}}
	var total int64
	for i, l := range got {
		if l.Width != want[i][0] || l.Height != want[i][1] || l.FPS != 30 {
			t.Errorf("layer %d: %dx%d @ %d", i, l.Width, l.Height, l.FPS)
		}
		total += l.Bitrate
	}
	if got[0].Bitrate != 250_000 || got[2].Bitrate != 1_625_000 || total != p.Bitrate {
		t.Errorf("bit rates %d / %d / %d, want 10/25/65%% of %d", got[0].Bitrate, got[1].Bitrate, got[2].Bitrate, p.Bitrate)
	}
	// Odd quarter sizes are rounded down to even ones (4:2:0).
	if l := layerParams(VideoParams{Width: 1000, Height: 562})[0]; l.Width != 250 || l.Height != 140 {
		t.Errorf("quarter of 1000x562 = %dx%d, want 250x140", l.Width, l.Height)
	}
}

// TestVP8FrameSize reads sizes back from the generator's keyframes and from
// the descriptors the SFU's rewrite may produce (TL0PICIDX, TID/KEYIDX,
// 7-bit picture ids).
func TestVP8FrameSize(t *testing.T) {
	buf := make([]byte, maxRTPPacket)
	p := buildVP8(buf, 300, 5000, 0, vp8Packets(5000), true, 640, 360, 1)
	if w, h, ok := vp8FrameSize(p); !ok || w != 640 || h != 360 {
		t.Fatalf("own keyframe: %dx%d %v", w, h, ok)
	}
	tag := []byte{0x10, 0x02, 0x00, 0x9d, 0x01, 0x2a, 0x40, 0x01, 0xb4, 0x00} // 320x180
	for _, desc := range [][]byte{
		{0x10},                               // no extension
		{0x90, 0x80, 0x05},                   // 7-bit picture id
		{0x90, 0xe0, 0x81, 0x02, 0x07, 0x40}, // 15-bit id, TL0PICIDX, TID
		{0x90, 0x50, 0x07, 0x20},             // TL0PICIDX, KEYIDX, no picture id
	} {
		pkt := append(append([]byte(nil), desc...), tag...)
		if w, h, ok := vp8FrameSize(pkt); !ok || w != 320 || h != 180 {
			t.Errorf("descriptor % x: %dx%d %v", desc, w, h, ok)
		}
		if !sfu.IsKeyframeStart(sfu.CodecVP8, pkt) {
			t.Errorf("descriptor % x: the SFU does not see a keyframe", desc)
		}
	}
	inter := buildVP8(buf, 300, 5000, 0, vp8Packets(5000), false, 640, 360, 1)
	cont := buildVP8(buf, 300, 5000, 1, vp8Packets(5000), true, 640, 360, 1)
	for _, pkt := range [][]byte{inter, cont, nil, {0x90}, {0x90, 0x80}} {
		if _, _, ok := vp8FrameSize(pkt); ok {
			t.Errorf("size read from % x", pkt[:min(len(pkt), 8)])
		}
	}
}

// h264Frames packetizes one keyframe and a few delta frames of a w×h layer
// the way runVideo does and returns the payloads.
func h264Frames(w, h int, sizes []int) [][]byte {
	body := make([]byte, maxRTPPacket)
	for i := range body {
		body[i] = byte(i*31 + 7)
	}
	params := h264ParamSets(w, h)
	var out [][]byte
	for i, size := range sizes {
		key := i == 0
		hdr := h264SliceHeaders[1+i%16]
		if key {
			hdr = h264SliceHeaders[0]
			p := append(append([]byte(nil), params...), make([]byte, stampLen)...)
			putStamp(p, int64(1000+i))
			out = append(out, p)
		}
		size = max(size, len(hdr)+1)
		parts := h264Packets(size)
		for part := 0; part < parts; part++ {
			scratch := make([]byte, maxRTPPacket)
			out = append(out, append([]byte(nil), buildH264(scratch, body, hdr, size, part, parts, int64(1000+i))...))
		}
	}
	return out
}

// TestH264Packets checks the synthetic H.264 with pion's depacketizer, the
// SFU's keyframe detection and the subscribers' size reader.
func TestH264Packets(t *testing.T) {
	for _, sz := range [][2]int{{1280, 720}, {640, 360}, {320, 180}, {1920, 1080}, {250, 140}} {
		sizes := []int{30_000, 800, 1188, 1189, 5000}
		pkts := h264Frames(sz[0], sz[1], sizes)
		var d codecs.H264Packet
		var nals int
		for i, p := range pkts {
			if len(p)+rtpHeaderLen > maxRTPPacket {
				t.Fatalf("%v packet %d: %d bytes with the RTP header", sz, i, len(p)+rtpHeaderLen)
			}
			if _, ok := readStamp(p); !ok {
				t.Fatalf("%v packet %d: no stamp", sz, i)
			}
			if got := sfu.IsKeyframeStart(sfu.CodecH264, p); got != (i == 0 || i == 1) {
				// The STAP-A (SPS) and the IDR's first fragment both start a keyframe.
				t.Fatalf("%v packet %d (type %d): IsKeyframeStart = %v", sz, i, p[0]&0x1f, got)
			}
			var scratch []byte
			w, h, ok := h264FrameSize(p, &scratch)
			if ok != (i == 0) || (ok && (w != sz[0] || h != sz[1])) {
				t.Fatalf("%v packet %d: size %dx%d %v", sz, i, w, h, ok)
			}
			out, err := d.Unmarshal(p)
			if err != nil {
				t.Fatalf("%v packet %d: pion cannot depacketize: %v", sz, i, err)
			}
			nals += bytes.Count(out, []byte{0, 0, 0, 1})
		}
		// SPS, PPS, SEI, then one NAL unit per frame.
		if want := 3 + len(sizes); nals != want {
			t.Fatalf("%v: %d NAL units depacketized, want %d", sz, nals, want)
		}
	}
}

// TestH264FFprobe: ffprobe reads the size and profile from the synthetic
// stream (the slice data is filler, so decoding it is not attempted).
func TestH264FFprobe(t *testing.T) {
	ffprobe := testutil.RequireTool(t, "ffprobe")
	var d codecs.H264Packet
	var annexB []byte
	for _, p := range h264Frames(640, 360, []int{3000, 900, 900}) {
		out, err := d.Unmarshal(p)
		if err != nil {
			t.Fatal(err)
		}
		annexB = append(annexB, out...)
	}
	path := filepath.Join(t.TempDir(), "synthetic.h264")
	if err := os.WriteFile(path, annexB, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(ffprobe, "-v", "quiet", "-f", "h264", "-show_entries", "stream=codec_name,profile,width,height",
		"-of", "json", path).Output()
	if err != nil {
		t.Fatalf("ffprobe: %v", err)
	}
	var res struct {
		Streams []struct {
			Codec   string `json:"codec_name"`
			Profile string `json:"profile"`
			Width   int    `json:"width"`
			Height  int    `json:"height"`
		} `json:"streams"`
	}
	if err := json.Unmarshal(out, &res); err != nil || len(res.Streams) != 1 {
		t.Fatalf("ffprobe output %s: %v", out, err)
	}
	s := res.Streams[0]
	if s.Codec != "h264" || s.Width != 640 || s.Height != 360 || s.Profile != "Constrained Baseline" {
		t.Fatalf("ffprobe sees %+v, want h264 Constrained Baseline 640x360", s)
	}
}
