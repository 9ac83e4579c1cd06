package recorder_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/starling-rtc/starling/internal/testutil"
	"github.com/starling-rtc/starling/recorder"
)

type events struct {
	mu  sync.Mutex
	all []recorder.Event
}

func (e *events) add(ev recorder.Event) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.all = append(e.all, ev)
}

func (e *events) of(typ string) []recorder.Event {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []recorder.Event
	for _, ev := range e.all {
		if ev.Type == typ {
			out = append(out, ev)
		}
	}
	return out
}

// mountTmpfs mounts a size-limited tmpfs (root only); the test is skipped
// where mounting is not allowed, the injected-fault unit test
// (TestTrackRecorderDiskFull) covers the same code paths everywhere.
func mountTmpfs(t *testing.T, size string) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("mounting a small tmpfs needs root: skipping (TestTrackRecorderDiskFull injects the same fault)")
	}
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("cannot mount tmpfs (%v: %s): skipping (TestTrackRecorderDiskFull injects the same fault)", err, strings.TrimSpace(string(out)))
	}
	t.Cleanup(func() { _ = exec.Command("umount", "-l", dir).Run() })
	return dir
}

// A recording on a file system that fills up mid-session stops with a
// clear error event, and every file written so far plays.
func TestRecordDiskFull(t *testing.T) {
	t.Parallel()
	testutil.RequireTool(t, "ffprobe")
	testutil.RequireTool(t, "ffmpeg")
	dir := mountTmpfs(t, "200k")
	var ev events
	m, rdir, _, final := recordSessionOpts(t, sessionOpts{room: "rec-full", dir: dir, onEvent: ev.add})
	if final.Status != "failed" || !strings.Contains(final.Error, "no space left on device") {
		t.Fatalf("status %q error %q: want failed with 'no space left on device'", final.Status, final.Error)
	}
	failed := ev.of(recorder.EventFailed)
	if len(failed) != 1 || !strings.Contains(failed[0].Error, "no space left") || len(ev.of(recorder.EventStarted)) != 1 {
		t.Fatalf("events: %+v", ev.all)
	}
	if m.Status != "failed" {
		t.Fatalf("manifest on the full disk: status %q", m.Status)
	}
	played := 0
	for _, tr := range m.Tracks {
		if tr.File == "" {
			continue
		}
		path := filepath.Join(rdir, tr.File)
		if e := testutil.DecodeErrors(t, path); e != "" {
			t.Errorf("%s: partial file does not decode cleanly: %s", tr.File, e)
		}
		pr := testutil.FFprobe(t, path)
		if len(pr.Streams) != 1 || atof(pr.Format.Duration) <= 0 {
			t.Fatalf("%s: ffprobe %+v", tr.File, pr)
		}
		if got := atoi(pr.Streams[0].NbReadFrames); got != tr.Frames {
			t.Errorf("%s: ffprobe decodes %d frames, the manifest says %d", tr.File, got, tr.Frames)
		}
		played++
		t.Logf("%s %s: %s frames, %s s playable (error: %s)", tr.ParticipantName, tr.Kind, pr.Streams[0].NbReadFrames, pr.Format.Duration, tr.Error)
	}
	if played == 0 {
		t.Fatal("no partial file was left")
	}
}

// An unwritable recordings folder fails the start with an error naming it.
func TestStartUnwritableDir(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	blocker := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(blocker, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	rec, err := recorder.NewManager(srv.Rooms(), recorder.Config{Dir: filepath.Join(blocker, "recordings"), Logger: testLogger()})
	if err != nil {
		t.Fatal(err)
	}
	c := join(t, srv, "rec-bad", "alice", nil)
	p := publishFiles(t, c, "alice")
	p.prime(t, func() bool { return srv.Rooms().Room("rec-bad") != nil })
	_, err = rec.StartRoom("rec-bad")
	if err == nil || !strings.Contains(err.Error(), blocker) || !strings.Contains(err.Error(), syscall.ENOTDIR.Error()) {
		t.Fatalf("start in an unwritable folder: %v", err)
	}
	if got := rec.List(""); len(got) != 0 {
		t.Fatalf("a failed start is listed: %+v", got)
	}
}

// Close (server stop) finalises open recordings: files and manifest final.
func TestManagerCloseFinalises(t *testing.T) {
	t.Parallel()
	testutil.RequireTool(t, "ffprobe")
	srv := startServer(t)
	dir := t.TempDir()
	rec, err := recorder.NewManager(srv.Rooms(), recorder.Config{Dir: dir, Logger: testLogger(), AutoRecord: []string{"auto-*"}})
	if err != nil {
		t.Fatal(err)
	}
	c := join(t, srv, "auto-close", "alice", nil)
	p := publishFiles(t, c, "alice")
	// auto-record starts on the first published track
	p.prime(t, func() bool {
		l := rec.List("auto-close")
		return len(l) == 1 && l[0].Tracks == 2
	})
	if l := rec.List("auto-close"); !l[0].Auto {
		t.Fatalf("not marked automatic: %+v", l[0])
	}
	done := make(chan struct{})
	go func() { p.send(); close(done) }()
	// Mid-clip: half of both files sent (a fixed 1.5 s could find a starved
	// sender far behind its schedule).
	for p.sentV.Load() < int64(len(p.vFrames)/2) || p.sentA.Load() < int64(len(p.aPackets)/2) {
		select {
		case <-done:
			t.Fatal("the clip ended before half of it was sent")
		case <-time.After(10 * time.Millisecond):
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := rec.Close(ctx); err != nil {
		t.Fatal(err)
	}
	l := rec.List("auto-close")
	if len(l) != 1 || l[0].Status != "finished" || len(l[0].Files) != 2 {
		t.Fatalf("after Close: %+v", l)
	}
	m, err := recorder.ReadManifest(l[0].Manifest)
	if err != nil || m.Status != "finished" || m.EndedAt == nil {
		t.Fatalf("manifest after Close: %+v %v", m, err)
	}
	for _, f := range l[0].Files {
		pr := testutil.FFprobe(t, f)
		if d := atof(pr.Format.Duration); d < 0.5 || d > 2.9 {
			t.Errorf("%s: duration %.3f s for a recording stopped 1.5 s into a 3 s clip", f, d)
		}
	}
	if _, err := rec.StartRoom("auto-close"); err == nil {
		t.Error("a closed manager started a recording")
	}
	<-done
}

// An auto-recorded room whose recording is stopped through the API is not
// recorded again when more tracks are published (until the room closes).
func TestAutoRecordStoppedStaysStopped(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	rec, err := recorder.NewManager(srv.Rooms(), recorder.Config{Dir: t.TempDir(), Logger: testLogger(), AutoRecord: []string{"auto-*"}})
	if err != nil {
		t.Fatal(err)
	}
	defer rec.Close(context.Background())
	a := publishFiles(t, join(t, srv, "auto-stop", "alice", nil), "alice")
	a.prime(t, func() bool { l := rec.List("auto-stop"); return len(l) == 1 && l[0].Tracks == 2 })
	id := rec.List("auto-stop")[0].ID
	if _, err := rec.Stop(id); err != nil {
		t.Fatal(err)
	}
	b := publishFiles(t, join(t, srv, "auto-stop", "bob", nil), "bob")
	b.prime(t, func() bool { return len(srv.Rooms().Room("auto-stop").ObservedTracks()) == 4 })
	time.Sleep(200 * time.Millisecond)
	if l := rec.List("auto-stop"); len(l) != 1 || l[0].Status != "finished" {
		t.Fatalf("recordings after a manual stop: %+v", l)
	}
}
