package recorder

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/pion/rtp/codecs"
	"github.com/pion/webrtc/v4"
	"github.com/starling-rtc/starling/internal/testutil"
)

// fullFile is a recording file on a disk with room for limit bytes: the
// write that crosses it is partly written, then fails with ENOSPC.
type fullFile struct {
	*os.File
	limit int64
	size  int64
}

func (f *fullFile) Write(b []byte) (int, error) {
	if f.size+int64(len(b)) <= f.limit {
		n, err := f.File.Write(b)
		f.size += int64(n)
		return n, err
	}
	room := f.limit - f.size
	if room < 0 {
		room = 0
	}
	n, _ := f.File.Write(b[:room])
	f.size += int64(n)
	return n, &os.PathError{Op: "write", Path: f.Name(), Err: syscall.ENOSPC}
}

func (f *fullFile) Truncate(size int64) error {
	f.size = size
	return f.File.Truncate(size)
}

// A disk that fills up mid-track stops the recording with the error and
// leaves a file that decodes cleanly up to the cut.
func TestTrackRecorderDiskFull(t *testing.T) {
	testutil.RequireTool(t, "ffmpeg")
	old := openRecFile
	t.Cleanup(func() { openRecFile = old })
	openRecFile = func(path string) (recFile, error) {
		f, err := old(path)
		if err != nil {
			return nil, err
		}
		return &fullFile{File: f.(*os.File), limit: 60 << 10}, nil
	}
	frames := testutil.ReadIVF(t, filepath.Join("testdata", "video.ivf"))
	src := newFakeSource("TR_full", webrtc.MimeTypeVP8, 90000, 0)
	var done TrackResult
	rec, err := NewTrackRecorder(src, TrackOptions{Logger: quiet, Dir: t.TempDir(), Name: "full", OnDone: func(r TrackResult) { done = r }})
	if err != nil {
		t.Fatal(err)
	}
	feedFrames(src, &codecs.VP8Payloader{EnablePictureID: true}, 90000, 3000, frames, nil)
	rec.Wait()
	res := rec.Result()
	if res.Err == nil || !strings.Contains(res.Err.Error(), "no space left on device") {
		t.Fatalf("error %v, want no space left on device", res.Err)
	}
	if done.Err == nil {
		t.Fatal("OnDone did not report the error")
	}
	src.mu.Lock()
	attached := len(src.sinks)
	src.mu.Unlock()
	if attached != 0 {
		t.Error("a failed recorder stays attached to its source")
	}
	st, _ := os.Stat(res.File)
	if res.Frames == 0 || res.Frames >= len(frames) || st.Size() > 60<<10 {
		t.Fatalf("%d frames, %d bytes: want a cut file", res.Frames, st.Size())
	}
	if e := testutil.DecodeErrors(t, res.File); e != "" {
		t.Fatalf("cut file does not decode cleanly: %s", e)
	}
	pr := testutil.FFprobe(t, res.File)
	if got := pr.Streams[0].Frames(); got != res.Frames {
		t.Errorf("ffprobe decodes %d frames, the recorder wrote %d", got, res.Frames)
	}
	if pr.Duration() <= 0 {
		t.Error("cut file has no duration")
	}
	t.Logf("disk full after 60 KB: %d of %d frames kept, %s s, error: %v", res.Frames, len(frames), pr.Format.Duration, res.Err)
}
