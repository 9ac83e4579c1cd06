package recorder

import (
	"math"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/pion/rtp/codecs"
	"github.com/pion/webrtc/v4"
	"github.com/starling-rtc/starling/internal/testutil"
)

// copyFile copies src to dst, keeping only its first n bytes (n < 0: all).
func copyFile(t *testing.T, src, dst string, cut int64) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if cut > 0 {
		b = b[:int64(len(b))-cut]
	}
	if err := os.WriteFile(dst, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// What a crash leaves (the bytes on disk while the recorder is writing,
// cut or not in the middle of a block) is read by ffprobe with a duration,
// and recoverFile makes it final: every frame it holds decodes, Cues and
// sizes written, the duration matches the frames.
func TestRecoverCrashedFile(t *testing.T) {
	t.Parallel()
	testutil.RequireTool(t, "ffprobe")
	frames := testutil.ReadIVF(t, filepath.Join("testdata", "video.ivf"))
	dir := t.TempDir()
	src := newFakeSource("TR_crash", webrtc.MimeTypeVP8, 90000, 0)
	rec, err := NewTrackRecorder(src, TrackOptions{Logger: quiet, Dir: dir, Name: "crash"})
	if err != nil {
		t.Fatal(err)
	}
	defer rec.Stop()
	feedFrames(src, &codecs.VP8Payloader{EnablePictureID: true}, 90000, 3000, frames, nil)
	// the writer flushes what it has within a second even without new
	// frames: wait for the file to stop growing
	path := filepath.Join(dir, "crash.webm")
	var size int64
	for deadline := time.Now().Add(10 * time.Second); ; {
		st, err := os.Stat(path)
		if err == nil && st.Size() == size && size > 0 && rec.Result().Frames >= len(frames)-3 {
			s, _ := scanMKV(path)
			if s != nil && s.frames >= len(frames)-3 {
				break
			}
		}
		if err == nil {
			size = st.Size()
		}
		if time.Now().After(deadline) {
			t.Fatalf("the file never got the frames flushed (size %d, %d frames recorded)", size, rec.Result().Frames)
		}
		time.Sleep(100 * time.Millisecond)
	}
	for _, c := range []struct {
		name string
		cut  int64
	}{{"whole", 0}, {"cut mid-block", 700}} {
		t.Run(c.name, func(t *testing.T) {
			crashed := filepath.Join(t.TempDir(), "crashed.webm")
			copyFile(t, path, crashed, c.cut)
			before := testutil.FFprobe(t, crashed)
			n0 := before.Streams[0].Frames()
			if n0 < len(frames)/2 || before.Duration() < 1 {
				t.Fatalf("ffprobe reads %d frames, %.3f s of the crashed file", n0, before.Duration())
			}
			rf, err := recoverFile(crashed)
			if err != nil {
				t.Fatal(err)
			}
			if !rf.Repaired || (c.cut > 0) != (rf.CutBytes > 0) {
				t.Fatalf("recover: %+v", rf)
			}
			s, err := scanMKV(crashed)
			if err != nil || !s.final() {
				t.Fatalf("not final after recovery: %+v %v", s, err)
			}
			after := testutil.FFprobe(t, crashed)
			if e := testutil.DecodeErrors(t, crashed); e != "" {
				t.Errorf("decode errors after recovery: %s", e)
			}
			n := after.Streams[0].Frames()
			want := float64(n) / 30
			if n != rf.Frames || n < n0-1 || math.Abs(after.Duration()-want) > 0.05 {
				t.Errorf("after recovery: %d frames (scan %d, before %d), %.3f s (want %.3f)", n, rf.Frames, n0, after.Duration(), want)
			}
			t.Logf("crashed file: %d frames %.3f s; recovered: cut %d bytes, %d frames, %.3f s", n0, before.Duration(), rf.CutBytes, n, after.Duration())
			again, err := recoverFile(crashed)
			if err != nil || again.Repaired {
				t.Errorf("second recovery changed the file: %+v %v", again, err)
			}
		})
	}
}
