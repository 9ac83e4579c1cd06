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

// Issue 17: a file must not outlast the media. The top layer's first 0.8 s
// of packets reach the recorder in one burst (as when pion holds a layer's
// packets until the server reads it), its keyframe of the first instant
// among them, while the low layer came on time all along. The recorder
// starts on the low layer and moves up; the file spans what was sent.
// Before layerclock.go the burst's keyframe was placed at its arrival, 0.8 s
// after the instant it shows, and the file ran 0.8 s longer than the media.
func TestTrackRecorderLayerBurst(t *testing.T) {
	t.Parallel() // judges the file's timeline against the RTP time sent
	testutil.RequireTool(t, "ffprobe")
	frames := testutil.ReadIVF(t, filepath.Join("testdata", "video.ivf"))
	src := newFakeSource("TR_burst", webrtc.MimeTypeVP8, 90000, 0)
	src.layers = 0b101
	var mu sync.Mutex
	var wantKey [3]bool
	src.onPLI = func(layer int8) {
		mu.Lock()
		defer mu.Unlock()
		if layer >= 0 && layer < 3 {
			wantKey[layer] = true
		}
	}
	rec, err := NewTrackRecorder(src, TrackOptions{Logger: quiet, Dir: t.TempDir(), Name: "burst"})
	if err != nil {
		t.Fatal(err)
	}
	const total, held = 90, 24 // 3 s at 30 fps; the top layer's first 0.8 s held back
	var pk [3]rtp.Packetizer
	var next [3]int // clip position per layer; a keyframe request restarts the clip
	for l := range pk {
		pk[l] = rtp.NewPacketizer(1200, 96, uint32(0x100+l), &codecs.VP8Payloader{EnablePictureID: true}, rtp.NewRandomSequencer(), 90000)
	}
	var backlog []*rtp.Packet
	start := time.Now()
	for i := 0; i < total; i++ {
		time.Sleep(time.Until(start.Add(time.Duration(i) * time.Second / 30)))
		for _, l := range []int8{0, 2} {
			mu.Lock()
			if wantKey[l] {
				wantKey[l], next[l] = false, 0
			}
			mu.Unlock()
			f := frames[next[l]%len(frames)]
			if next[l]%len(frames) == 0 {
				f = frames[0]
			}
			next[l]++
			pkts := pk[l].Packetize(f, 3000)
			if l == 2 && i < held {
				backlog = append(backlog, pkts...)
				continue
			}
			if l == 2 && i == held {
				pkts = append(backlog, pkts...)
			}
			for _, p := range pkts {
				src.write(p, l)
			}
		}
	}
	res := rec.Stop()
	if res.Err != nil || res.File == "" {
		t.Fatalf("no file: %v", res.Err)
	}
	if e := testutil.DecodeErrors(t, res.File); e != "" {
		t.Fatalf("decode errors: %s", e)
	}
	pts := framePTS(t, res.File)
	span := pts[len(pts)-1] - pts[0]
	sent := float64(total-1) / 30
	t.Logf("%d frames, start layer %d, %d switches, %d dropped; the file spans %.3f s of the %.3f s sent",
		len(pts), res.StartLayer, res.LayerSwitches, res.DroppedFrames, span, sent)
	if res.StartLayer != 0 || res.LayerSwitches < 1 {
		t.Fatalf("start layer %d, %d switches: want a start on layer 0 and a move up", res.StartLayer, res.LayerSwitches)
	}
	// Frames are placed by RTP time; only a switch mapped wrong adds time.
	if span > sent+0.15 || span < sent-0.3 {
		t.Errorf("the file spans %.3f s for %.3f s of media", span, sent)
	}
}

// layerClock alone: a delayed packet does not move the reference, an
// earlier-arriving one does, and a jump of the RTP base is followed (a
// stale reference would map a switch hours off).
func TestLayerClock(t *testing.T) {
	const clock = 90000
	var c layerClock
	at := int64(1_000_000_000)
	ts := func(i int64) uint32 { return uint32(1000 + 3000*i) }    // 30 fps
	capt := func(i int64) int64 { return at + i*1_000_000_000/30 } // frame i's capture
	for i := int64(0); i < 30; i++ {
		c.observe(ts(i), capt(i)+20_000_000, clock) // arriving 20 ms after capture
	}
	if got, ok := c.capture(ts(30), at+2e9, clock); !ok || got != capt(30)+20_000_000 {
		t.Fatalf("frame 30 maps to %d (%v), want %d", got, ok, capt(30)+20_000_000)
	}
	// A burst of frames 30-39, all arriving 800 ms after frame 39's capture: the reference holds.
	for i := int64(30); i < 40; i++ {
		c.observe(ts(i), capt(39)+800_000_000, clock)
	}
	if got, _ := c.capture(ts(35), at+3e9, clock); got != capt(35)+20_000_000 {
		t.Fatalf("after a late burst frame 35 maps to %d, want %d", got, capt(35)+20_000_000)
	}
	// One packet 15 ms sooner than any: it is the reference now.
	c.observe(ts(40), capt(40)+5_000_000, clock)
	if got, _ := c.capture(ts(40), at+3e9, clock); got != capt(40)+5_000_000 {
		t.Fatalf("frame 40 maps to %d, want %d", got, capt(40)+5_000_000)
	}
	// The RTP base jumps back by an hour's ticks: followed at once.
	jumped := ts(41) - clock*3600
	now := capt(41) + 20_000_000
	c.observe(jumped, now, clock)
	if got, _ := c.capture(jumped, now, clock); got != now {
		t.Fatalf("after a jump of the RTP base: %d, want %d", got, now)
	}
	if !c.settled(capt(0)+20_000_000+layerSettle) || c.settled(capt(0)+20_000_000+layerSettle-1) {
		t.Fatalf("settled: the first packet came at %d", c.first)
	}
}
