package main

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/starling-rtc/starling/internal/testutil"
	"github.com/starling-rtc/starling/recorder"
)

// A hand-made manifest with three participants (one joining late, one
// audio only) composes into a 2x2-capable grid with audio.
func TestComposeCommand(t *testing.T) {
	testutil.RequireFFmpeg(t)
	// With the tests that run the binary (under -race those run serially
	// before it: then it runs alone).
	t.Parallel()
	dir := t.TempDir()
	mk := func(name string, args ...string) {
		t.Helper()
		cmd := exec.Command("ffmpeg", append(append([]string{"-nostdin", "-v", "error"}, args...), filepath.Join(dir, name))...)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("making %s: %v: %s", name, err, out)
		}
	}
	mk("a_v.webm", "-f", "lavfi", "-i", "testsrc2=size=320x180:rate=30:duration=2", "-c:v", "libvpx", "-deadline", "realtime", "-cpu-used", "8")
	mk("b_v.webm", "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=30:duration=1", "-c:v", "libvpx", "-deadline", "realtime", "-cpu-used", "8")
	mk("a_a.webm", "-f", "lavfi", "-i", "sine=frequency=440:duration=2", "-c:a", "libopus")
	mk("c_a.webm", "-f", "lavfi", "-i", "sine=frequency=660:duration=1", "-c:a", "libopus")
	m := recorder.Manifest{Version: 1, ID: "x", Kind: "room", Room: "r", Status: "finished", StartedAt: time.Now(),
		Tracks: []recorder.ManifestTrack{
			{ID: "TR_1", ParticipantName: "alice", Kind: "video", File: "a_v.webm", StartMS: 0, EndMS: 2000, Frames: 60},
			{ID: "TR_2", ParticipantName: "alice", Kind: "audio", File: "a_a.webm", StartMS: 0, EndMS: 2000, Frames: 100},
			{ID: "TR_3", ParticipantName: "bob: late", Kind: "video", File: "b_v.webm", StartMS: 1000, EndMS: 2000, Frames: 30},
			{ID: "TR_4", ParticipantName: "carol", Kind: "audio", File: "c_a.webm", StartMS: 500, EndMS: 1500, Frames: 50},
		}}
	b, _ := json.Marshal(m)
	manifest := filepath.Join(dir, recorder.ManifestFile)
	if err := os.WriteFile(manifest, b, 0o644); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	out := filepath.Join(dir, "out.mp4")
	if code := run([]string{"compose", manifest, "-o", out, "-width", "640", "-height", "360"}, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d: %s %s", code, stdout.String(), stderr.String())
	}
	if !strings.Contains(stdout.String(), "100%") {
		t.Errorf("no progress: %s", stdout.String())
	}
	probe, err := exec.Command("ffprobe", "-v", "error", "-show_entries", "stream=codec_name,width,height:format=duration", "-of", "compact", out).Output()
	if err != nil {
		t.Fatal(err)
	}
	p := string(probe)
	if !strings.Contains(p, "codec_name=h264|width=640|height=360") || !strings.Contains(p, "codec_name=aac") || !strings.Contains(p, "duration=2.0") {
		t.Errorf("composed file: %s", p)
	}
	if code := run([]string{"compose"}, &stdout, &stderr); code != 2 {
		t.Errorf("no manifest: exit %d, want 2", code)
	}
	if code := run([]string{"compose", filepath.Join(dir, "missing.json")}, &stdout, &stderr); code != 1 {
		t.Errorf("missing manifest: exit %d, want 1", code)
	}
	if os.Getenv("STARLING_KEEP_COMPOSE") != "" {
		_ = exec.Command("ffmpeg", "-v", "error", "-y", "-ss", "1.5", "-i", out, "-frames:v", "1", os.Getenv("STARLING_KEEP_COMPOSE")).Run()
	}
}
