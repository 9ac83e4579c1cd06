package recorder

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pion/rtp/codecs"
	"github.com/pion/webrtc/v4"
	"github.com/starling-rtc/starling/internal/testutil"
)

// makeIVF encodes a testsrc2 clip of the given size with libvpx (VP8).
func makeIVF(t testing.TB, dir, size string, seconds int) [][]byte {
	t.Helper()
	p := filepath.Join(dir, size+".ivf")
	if out, err := exec.Command("ffmpeg", "-nostdin", "-v", "error", "-y", "-f", "lavfi",
		"-i", fmt.Sprintf("testsrc2=size=%s:rate=30:duration=%d", size, seconds),
		"-c:v", "libvpx", "-deadline", "realtime", "-cpu-used", "8", "-g", "60", "-auto-alt-ref", "0", p).CombinedOutput(); err != nil {
		t.Fatalf("making the %s clip: %v: %s", size, err, out)
	}
	return testutil.ReadIVF(t, p)
}

// regionLuma returns the average luma (YAVG) of a region of every frame of
// a video file, in presentation order, with each frame's time.
func regionLuma(t testing.TB, path string, x, y, w, h int) (ts, ys []float64) {
	t.Helper()
	vf := fmt.Sprintf("crop=%d:%d:%d:%d,signalstats,metadata=print:key=lavfi.signalstats.YAVG:file=-", w, h, x, y)
	out, err := exec.Command("ffmpeg", "-nostdin", "-v", "error", "-i", path, "-vf", vf, "-an", "-f", "null", "-").Output()
	if err != nil {
		t.Fatalf("ffmpeg signalstats: %v", err)
	}
	var cur float64
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		line := sc.Text()
		if i := strings.Index(line, "pts_time:"); i >= 0 {
			cur, _ = strconv.ParseFloat(strings.Fields(line[i+len("pts_time:"):])[0], 64)
		} else if v, ok := strings.CutPrefix(line, "lavfi.signalstats.YAVG="); ok {
			y, _ := strconv.ParseFloat(v, 64)
			ts, ys = append(ts, cur), append(ys, y)
		}
	}
	return ts, ys
}

// Defect 6 (issue 17): a recorded video file that switches 320x180 →
// 160x90 → 320x180 inside the file (recorder layer switches) composed with
// another participant's file: no tile may go black after a switch; both
// show a picture to the end.
func TestComposeResolutionChangeInFile(t *testing.T) {
	t.Parallel()
	testutil.RequireTool(t, "ffmpeg")
	testutil.RequireTool(t, "ffprobe")
	dir := t.TempDir()
	big := makeIVF(t, dir, "320x180", 1)
	small := makeIVF(t, dir, "160x90", 1)
	frames := append(append(append([][]byte{}, big...), small...), big...)

	record := func(id string, frames [][]byte) TrackResult {
		src := newFakeSource(id, webrtc.MimeTypeVP8, 90000, 0)
		rec, err := NewTrackRecorder(src, TrackOptions{Logger: quiet, Dir: dir, Name: id})
		if err != nil {
			t.Fatal(err)
		}
		feedFrames(src, &codecs.VP8Payloader{EnablePictureID: true}, 90000, 3000, frames, nil)
		res := rec.Stop()
		if res.Err != nil || res.Frames != len(frames) {
			t.Fatalf("%s: recorded %d of %d frames, err %v", id, res.Frames, len(frames), res.Err)
		}
		return res
	}
	res := record("TR_switch", frames)
	// the other participant changes aspect too (a phone turning): 16:9,
	// square, 16:9
	square := makeIVF(t, dir, "180x180", 1)
	otherRes := record("TR_other", append(append(append([][]byte{}, big...), square...), big...))
	m := Manifest{Version: 1, ID: "resize", Kind: "room", Room: "r", Status: "finished", StartedAt: time.Now(),
		Tracks: []ManifestTrack{
			{ID: "TR_switch", ParticipantName: "switcher", Kind: "video", File: filepath.Base(res.File), StartMS: 0, EndMS: 3000, Frames: res.Frames},
			{ID: "TR_other", ParticipantName: "other", Kind: "video", File: filepath.Base(otherRes.File), StartMS: 0, EndMS: 3000, Frames: otherRes.Frames},
		}}
	b, _ := json.Marshal(m)
	manifest := filepath.Join(dir, ManifestFile)
	if err := os.WriteFile(manifest, b, 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "composed.mp4")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	plan, err := Compose(ctx, ComposeOptions{Manifest: manifest, Output: out, Width: 640, Height: 360, NoNames: true})
	if err != nil {
		t.Fatalf("compose: %v", err)
	}
	if len(plan.Tiles) != 2 {
		t.Fatalf("%d tiles, want 2", len(plan.Tiles))
	}
	for _, tile := range plan.Tiles {
		// the middle of the tile: testsrc2 is colourful there (YAVG well
		// above black's 16) whatever the frame
		ts, ys := regionLuma(t, out, tile.X+tile.W/4, tile.Y+tile.H/4, (tile.W/2)&^1, (tile.H/2)&^1)
		if len(ts) < 80 {
			t.Fatalf("tile %s: %d frames in the composed file", tile.Name, len(ts))
		}
		black := 0
		first := -1.0
		for i, y := range ys {
			if y < 25 {
				black++
				if first < 0 {
					first = ts[i]
				}
			}
		}
		if black > 0 {
			t.Errorf("tile %s: %d of %d frames black, from %.3f s (the switches are at 1 s and 2 s)", tile.Name, black, len(ys), first)
		}
	}
	// Each frame is fitted to its tile with its own aspect ratio: a band
	// near the top of a (320x360) tile is letterbox grey for 16:9 frames
	// and picture for the square ones (scaled to 320x320).
	const grey = 43.5 // 0x202020 in limited-range luma
	for _, tile := range plan.Tiles {
		_, ys := regionLuma(t, out, tile.X+tile.W/8, tile.Y+tile.H/12, (tile.W*5/8)&^1, (tile.H/12)&^1)
		for i, y := range ys {
			square := tile.Name == "other" && i >= 31 && i < 59
			wide := tile.Name == "switcher" || i < 29 || i > 61
			if square && math.Abs(y-grey) < 10 {
				t.Errorf("tile %s frame %d: letterboxed (band luma %.1f) though the frame is square", tile.Name, i, y)
			}
			if wide && math.Abs(y-grey) > 3 {
				t.Errorf("tile %s frame %d: band luma %.1f, want the letterbox grey %.1f for a 16:9 frame", tile.Name, i, y, grey)
			}
		}
	}
	if e := testutil.DecodeErrors(t, out); e != "" {
		t.Errorf("composed file: %s", e)
	}
}
