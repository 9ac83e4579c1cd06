package recorder_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/starling-rtc/starling/internal/testutil"
	"github.com/starling-rtc/starling/recorder"
)

type yavg struct{ t, y float64 }

// tileLuma returns the average luma of a region of every frame.
func tileLuma(t testing.TB, path string, r [4]int) []yavg {
	t.Helper()
	x, y, w, h := r[0], r[1], r[2], r[3]
	vf := fmt.Sprintf("crop=%d:%d:%d:%d,signalstats,metadata=print:key=lavfi.signalstats.YAVG:file=-", w, h, x, y)
	out, err := exec.Command("ffmpeg", "-nostdin", "-v", "error", "-i", path, "-vf", vf, "-an", "-f", "null", "-").Output()
	if err != nil {
		t.Fatalf("ffmpeg signalstats: %v", err)
	}
	var res []yavg
	var cur float64
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		line := sc.Text()
		if i := strings.Index(line, "pts_time:"); i >= 0 {
			fmt.Sscanf(line[i+len("pts_time:"):], "%g", &cur)
		} else if v, ok := strings.CutPrefix(line, "lavfi.signalstats.YAVG="); ok {
			res = append(res, yavg{cur, atof(v)})
		}
	}
	return res
}

// mid is the middle of a tile (inside the picture, away from padding and
// the name label).
func mid(tile recorder.ComposeTile) [4]int {
	return [4]int{tile.X + tile.W/4, tile.Y + tile.H/2 - tile.H/8, (tile.W / 2) &^ 1, (tile.H / 4) &^ 1}
}

// firstLoud returns the time of the first audio sample above level (0..1).
func firstLoud(t testing.TB, path string, level float64) float64 {
	t.Helper()
	out, err := exec.Command("ffmpeg", "-nostdin", "-v", "error", "-i", path, "-vn", "-ac", "1", "-ar", "48000", "-f", "s16le", "-").Output()
	if err != nil {
		t.Fatalf("ffmpeg audio: %v", err)
	}
	for i := 0; i+1 < len(out); i += 2 {
		v := int16(binary.LittleEndian.Uint16(out[i:]))
		if math.Abs(float64(v)) > level*32767 {
			return float64(i/2) / 48000
		}
	}
	return -1
}

// Compose a two-person recording where bob starts 1 s late: the output has
// the expected grid size and an audio stream, bob's tile appears when he
// started, and the flash and beep (same instant in the clip) stay within
// 40 ms of each other after recording and composition.
func TestComposeLateJoinAndSync(t *testing.T) {
	t.Parallel()
	testutil.RequireTool(t, "ffprobe")
	testutil.RequireTool(t, "ffmpeg")
	m, dir, pubs := recordSession(t, "rec-compose", 0, time.Second)
	// bob's clip started about 1 s after alice's: by the publishers' own
	// clocks (a busy machine can stretch the 1 s), give or take their late
	// writes, which skew their sender reports.
	started := map[string]time.Time{}
	var slack time.Duration
	for _, p := range pubs {
		started[p.name] = p.started
		slack += time.Duration(p.lateV.Load() + p.lateA.Load())
	}
	late := started["bob"].Sub(started["alice"])
	var progress bytes.Buffer
	out := filepath.Join(dir, "composed.mp4")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	plan, err := recorder.Compose(ctx, recorder.ComposeOptions{
		Manifest: filepath.Join(dir, recorder.ManifestFile), Output: out, Progress: &progress,
	})
	if err != nil {
		t.Fatalf("compose: %v\n%s", err, progress.String())
	}
	if !strings.Contains(progress.String(), "100%") {
		t.Errorf("no progress shown:\n%s", progress.String())
	}
	pr := testutil.FFprobe(t, out)
	var haveAudio bool
	for _, s := range pr.Streams {
		switch s.CodecName {
		case "h264":
			if s.Width != 1280 || s.Height != 720 {
				t.Errorf("composed video %dx%d, want 1280x720", s.Width, s.Height)
			}
		case "aac":
			haveAudio = true
		}
	}
	if !haveAudio {
		t.Errorf("composed file has no audio stream: %+v", pr.Streams)
	}
	if plan.Cols != 2 || plan.Rows != 1 || len(plan.Tiles) != 2 {
		t.Fatalf("grid %dx%d with %d tiles, want 2x1 with 2", plan.Cols, plan.Rows, len(plan.Tiles))
	}
	if e := testutil.DecodeErrors(t, out); e != "" {
		t.Errorf("composed file decode errors: %s", e)
	}
	var alice, bob recorder.ComposeTile
	for _, tile := range plan.Tiles {
		switch tile.Name {
		case "alice":
			alice = tile
		case "bob":
			bob = tile
		}
	}
	// bob's tile: black before he starts, picture after
	appear := -1.0
	for _, s := range tileLuma(t, out, mid(bob)) {
		if s.y > 30 {
			appear = s.t
			break
		}
	}
	if math.Abs(appear-late.Seconds()) > 0.3+slack.Seconds() || math.Abs(appear-bob.Start.Seconds()) > 0.05 {
		t.Errorf("bob's tile appears at %.3f s; he started %.3f s late (manifest %.3f s; publishers' writes up to %s late)", appear, late.Seconds(), bob.Start.Seconds(), slack)
	}
	// alice's flash (white tile) and beep: same instant in her clip
	flash := -1.0
	for _, s := range tileLuma(t, out, mid(alice)) {
		if s.y > 150 {
			flash = s.t
			break
		}
	}
	beep := firstLoud(t, out, 0.5)
	if flash < 0 || beep < 0 {
		t.Fatalf("marker not found: flash %.3f s, beep %.3f s", flash, beep)
	}
	if d := math.Abs(flash - beep); d >= 0.040 {
		t.Errorf("A/V offset of the marker: flash %.3f s, beep %.3f s: %.0f ms apart (want < 40 ms)", flash, beep, d*1000)
	}
	t.Logf("composed %s: %s s, bob appears at %.3f s (manifest %.3f s), flash %.3f s, beep %.3f s (%.0f ms)",
		filepath.Base(out), pr.Format.Duration, appear, bob.Start.Seconds(), flash, beep, math.Abs(flash-beep)*1000)
	for _, tr := range m.Tracks {
		t.Logf("track %s %s start %d ms end %d ms (%s)", tr.ParticipantName, tr.Kind, tr.StartMS, tr.EndMS, tr.ClockSource)
	}
}

// With Config.Compose a finished room recording is composed in the
// background, with events, and the result is listed.
func TestAutoCompose(t *testing.T) {
	t.Parallel()
	testutil.RequireTool(t, "ffprobe")
	testutil.RequireTool(t, "ffmpeg")
	srv := startServer(t)
	var ev events
	composed := make(chan recorder.Event, 1)
	rec, err := recorder.NewManager(srv.Rooms(), recorder.Config{Dir: t.TempDir(), Logger: testLogger(), Compose: true,
		OnEvent: func(e recorder.Event) {
			ev.add(e)
			if e.Type == recorder.EventComposed || e.Type == recorder.EventComposeFailed {
				composed <- e
			}
		}})
	if err != nil {
		t.Fatal(err)
	}
	defer rec.Close(context.Background())
	p := publishFiles(t, join(t, srv, "compose-auto", "alice", nil), "alice")
	p.prime(t, func() bool { return srv.Rooms().Room("compose-auto") != nil })
	info, err := rec.StartRoom("compose-auto")
	if err != nil {
		t.Fatal(err)
	}
	p.prime(t, func() bool { in, _ := rec.Get(info.ID); return in.Tracks == 2 })
	p.send()
	if _, err := rec.Stop(info.ID); err != nil {
		t.Fatal(err)
	}
	var e recorder.Event
	select {
	case e = <-composed:
	case <-time.After(2 * time.Minute):
		t.Fatal("no composition event")
	}
	if e.Type != recorder.EventComposed || len(e.Files) != 1 {
		t.Fatalf("composition: %+v", e)
	}
	if len(ev.of(recorder.EventComposeStarted)) != 1 {
		t.Errorf("events: %+v", ev.all)
	}
	pr := testutil.FFprobe(t, e.Files[0])
	// The clip is 3 s; late writes of the publisher on a busy machine skew
	// its tracks' starts (sender reports) and so the composition's length.
	late := time.Duration(p.lateV.Load() + p.lateA.Load())
	if len(pr.Streams) != 2 || math.Abs(atof(pr.Format.Duration)-3.0) > 0.2+late.Seconds() {
		t.Errorf("composed file: %+v (publisher's writes up to %s late)", pr, late)
	}
	if in, _ := rec.Get(info.ID); in.Composed != e.Files[0] {
		t.Errorf("listed composed file %q, want %q", in.Composed, e.Files[0])
	}
}
