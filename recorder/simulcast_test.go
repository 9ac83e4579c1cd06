package recorder

import (
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/rtp/codecs"
	"github.com/pion/webrtc/v4"
	"github.com/starling-rtc/starling/internal/testutil"
)

// A simulcast track: the recorder takes the highest layer; when that layer
// stops it switches to the next one at a keyframe (asking for one), and the
// file stays continuous and decodes cleanly.
func TestTrackRecorderSimulcast(t *testing.T) {
	t.Parallel() // judges the file (duration by RTP time, frames, decoding), not the wall clock
	testutil.RequireTool(t, "ffprobe")
	frames := testutil.ReadIVF(t, filepath.Join("testdata", "video.ivf"))
	src := newFakeSource("TR_sim", webrtc.MimeTypeVP8, 90000, 0)
	src.layers = 0b111
	var mu sync.Mutex
	wantKey := [3]bool{}
	src.onPLI = func(layer int8) {
		mu.Lock()
		defer mu.Unlock()
		if layer >= 0 && layer < 3 {
			wantKey[layer] = true
		}
	}
	rec, err := NewTrackRecorder(src, TrackOptions{Logger: quiet, Dir: t.TempDir(), Name: "sim"})
	if err != nil {
		t.Fatal(err)
	}
	var pk [3]rtp.Packetizer
	var next [3]int // clip position per layer; a keyframe request restarts the clip
	for l := range pk {
		pk[l] = rtp.NewPacketizer(1200, 96, uint32(0x100+l), &codecs.VP8Payloader{EnablePictureID: true}, rtp.NewRandomSequencer(), 90000)
	}
	const total = 120 // 4 s at 30 fps; layer 2 stops after 1 s
	start := time.Now()
	for i := 0; i < total; i++ {
		time.Sleep(time.Until(start.Add(time.Duration(i) * time.Second / 30)))
		for l := int8(0); l < 3; l++ {
			if l == 2 && i >= 30 {
				continue
			}
			mu.Lock()
			if wantKey[l] {
				wantKey[l], next[l] = false, 0
			}
			mu.Unlock()
			f := frames[next[l]%len(frames)]
			if next[l]%len(frames) == 0 && next[l] > 0 {
				f = frames[0]
			}
			next[l]++
			for _, p := range pk[l].Packetize(f, 3000) {
				src.write(p, l)
			}
		}
	}
	res := rec.Stop()
	if res.Err != nil {
		t.Fatal(res.Err)
	}
	// it starts on the first keyframe (any layer), moves up to the top at
	// once and down to layer 1 when the top stops
	if res.LayerSwitches < 1 {
		t.Fatalf("start layer %d, %d switches: want a switch to layer 1 when the top stopped", res.StartLayer, res.LayerSwitches)
	}
	if e := testutil.DecodeErrors(t, res.File); e != "" {
		t.Fatalf("decode errors after the switch: %s", e)
	}
	pr := testutil.FFprobe(t, res.File)
	d := pr.Duration()
	// Across a layer switch the recorder bridges the two layers' unrelated
	// timestamps by arrival time, so a stall of this writer at the switch
	// (a loaded machine: 4.23 s seen) is in the file as a real gap would be.
	if d < 3.5 || d > 4.5 {
		t.Errorf("duration %.3f s for a 4 s track", d)
	}
	if n := pr.Streams[0].Frames(); n < 80 {
		t.Errorf("%d frames: the switch took more than a second", n)
	}
	t.Logf("simulcast: %d frames, %.3f s, %d dropped waiting for the switch keyframe", pr.Streams[0].Frames(), d, res.DroppedFrames)
}
