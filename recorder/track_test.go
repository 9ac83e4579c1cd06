package recorder

import (
	"math"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/rtp/codecs"
	"github.com/pion/webrtc/v4"
	"github.com/starling-rtc/starling/internal/testutil"
	"github.com/starling-rtc/starling/sfu"
)

type codecCase struct {
	name    string
	mime    string
	file    string
	clock   uint32
	chans   uint16
	pay     func() rtp.Payloader
	load    func(testing.TB, string) [][]byte
	samples uint32 // RTP ticks per frame
	ext     string
	probe   string // ffprobe codec_name
	w, h    int
}

var codecCases = []codecCase{
	{"vp8", webrtc.MimeTypeVP8, "video.ivf", 90000, 0, func() rtp.Payloader { return &codecs.VP8Payloader{EnablePictureID: true} }, testutil.ReadIVF, 3000, ".webm", "vp8", 320, 180},
	{"vp9", webrtc.MimeTypeVP9, "vp9.ivf", 90000, 0, func() rtp.Payloader { return &codecs.VP9Payloader{} }, testutil.ReadIVF, 3000, ".webm", "vp9", 320, 180},
	{"av1", webrtc.MimeTypeAV1, "av1.ivf", 90000, 0, func() rtp.Payloader { return &codecs.AV1Payloader{} }, testutil.ReadIVF, 3000, ".webm", "av1", 320, 180},
	{"h264", webrtc.MimeTypeH264, "h264.h264", 90000, 0, func() rtp.Payloader { return &codecs.H264Payloader{} }, loadH264, 3000, ".mkv", "h264", 320, 180},
	{"opus", webrtc.MimeTypeOpus, "audio.ogg", 48000, 2, func() rtp.Payloader { return &codecs.OpusPayloader{} }, testutil.ReadOgg, 960, ".webm", "opus", 0, 0},
}

// feedFrames packetizes frames and writes them to src; drop decides per
// packet whether it is lost. It returns the number of packets sent.
func feedFrames(src *fakeSource, pay rtp.Payloader, clock, samples uint32, frames [][]byte, drop func() bool) int {
	p := rtp.NewPacketizer(1200, 96, 0x1234, pay, rtp.NewRandomSequencer(), clock)
	n := 0
	for _, fr := range frames {
		for _, pkt := range p.Packetize(fr, samples) {
			n++
			if drop != nil && drop() {
				continue
			}
			src.write(pkt, 0)
		}
		// let the writer keep up (a loaded machine must not turn into drops)
		src.mu.Lock()
		sinks := append([]sfu.Sink(nil), src.sinks...)
		src.mu.Unlock()
		for _, s := range sinks {
			if r, ok := s.(*TrackRecorder); ok {
				for len(r.queue) > 0 && !r.closed.Load() {
					time.Sleep(100 * time.Microsecond)
				}
			}
		}
	}
	return n
}

func TestTrackRecorderCodecs(t *testing.T) {
	t.Parallel()
	testutil.RequireTool(t, "ffprobe")
	for _, c := range codecCases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			frames := c.load(t, filepath.Join("testdata", c.file))
			src := newFakeSource("TR_"+c.name, c.mime, c.clock, c.chans)
			rec, err := NewTrackRecorder(src, TrackOptions{Logger: quiet, Dir: dir, Name: c.name, Title: c.name})
			if err != nil {
				t.Fatal(err)
			}
			feedFrames(src, c.pay(), c.clock, c.samples, frames, nil)
			res := rec.Stop()
			if res.Err != nil {
				t.Fatal(res.Err)
			}
			if filepath.Ext(res.File) != c.ext {
				t.Fatalf("file %s, want extension %s", res.File, c.ext)
			}
			if res.Frames != len(frames) {
				t.Errorf("recorder wrote %d frames, sent %d (dropped %d, queue drops %d)", res.Frames, len(frames), res.DroppedFrames, res.Drops)
			}
			pr := testutil.FFprobe(t, res.File)
			if len(pr.Streams) != 1 {
				t.Fatalf("ffprobe: %d streams", len(pr.Streams))
			}
			s := pr.Streams[0]
			if s.CodecName != c.probe {
				t.Errorf("codec %s, want %s", s.CodecName, c.probe)
			}
			if s.Frames() != len(frames) {
				t.Errorf("ffprobe decoded %d frames, sent %d", s.Frames(), len(frames))
			}
			if c.w > 0 && (s.Width != c.w || s.Height != c.h) {
				t.Errorf("size %dx%d, want %dx%d", s.Width, s.Height, c.w, c.h)
			}
			want := float64(len(frames)) * float64(c.samples) / float64(c.clock)
			if d := pr.Duration(); math.Abs(d-want) > 0.2 {
				t.Errorf("duration %.3f s, want %.3f s ± 0.2", d, want)
			}
			if e := testutil.DecodeErrors(t, res.File); e != "" {
				t.Errorf("decoding %s: %s", res.File, e)
			}
			if c.name == "h264" { // Matroska H.264 remuxes to MP4 as is
				mp4 := filepath.Join(dir, "remux.mp4")
				if out, err := exec.Command("ffmpeg", "-nostdin", "-v", "error", "-i", res.File, "-c", "copy", mp4).CombinedOutput(); err != nil {
					t.Errorf("remux to MP4: %v: %s", err, out)
				} else if n := testutil.FFprobe(t, mp4).Streams[0].Frames(); n != len(frames) {
					t.Errorf("remuxed MP4 has %d frames, want %d", n, len(frames))
				}
			}
			t.Logf("%s: %d frames, ffprobe duration %s s (sent %.3f s)", c.name, s.Frames(), pr.Format.Duration, want)
		})
	}
}

// With 3% of packets lost the file must still decode without an error: the
// recorder drops incomplete frames and frames after a gap until a keyframe,
// and asks for keyframes.
func TestTrackRecorderLoss(t *testing.T) {
	t.Parallel()
	testutil.RequireTool(t, "ffmpeg")
	frames := testutil.ReadIVF(t, filepath.Join("testdata", "video.ivf"))
	src := newFakeSource("TR_loss", webrtc.MimeTypeVP8, 90000, 0)
	dir := t.TempDir()
	rec, err := NewTrackRecorder(src, TrackOptions{Logger: quiet, Dir: dir, Name: "loss"})
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewSource(3))
	// the file's keyframes come every 60 frames: repeat the clip so a few
	// keyframes follow losses
	all := append(append(append([][]byte{}, frames...), frames...), frames...)
	feedFrames(src, &codecs.VP8Payloader{EnablePictureID: true}, 90000, 3000, all, func() bool { return rng.Float64() < 0.03 })
	res := rec.Stop()
	if res.Err != nil {
		t.Fatal(res.Err)
	}
	if res.Frames == 0 {
		t.Fatal("nothing written")
	}
	if e := testutil.DecodeErrors(t, res.File); e != "" {
		t.Fatalf("decoding with 3%% loss: %s", e)
	}
	if res.DroppedFrames == 0 || src.plis.Load() < 1 {
		t.Errorf("dropped %d frames, %d keyframe requests: want frames after losses dropped and keyframes asked for", res.DroppedFrames, src.plis.Load())
	}
	t.Logf("3%% loss: %d of %d frames written, %d dropped, %d keyframe requests", res.Frames, len(all), res.DroppedFrames, src.plis.Load())
}

// A recording with no packets leaves no file.
func TestTrackRecorderEmpty(t *testing.T) {
	t.Parallel()
	src := newFakeSource("TR_e", webrtc.MimeTypeVP8, 90000, 0)
	dir := t.TempDir()
	rec, err := NewTrackRecorder(src, TrackOptions{Logger: quiet, Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	res := rec.Stop()
	if res.File != "" || res.Err != nil {
		t.Fatalf("got %+v", res)
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 0 {
		t.Fatalf("files left: %v", ents)
	}
}

// A resolution change mid-stream (the publisher scales, or a simulcast
// switch) stays in one file that decodes cleanly.
func TestTrackRecorderResolutionChange(t *testing.T) {
	t.Parallel()
	testutil.RequireTool(t, "ffmpeg")
	dir := t.TempDir()
	big := filepath.Join(dir, "big.ivf")
	if out, err := exec.Command("ffmpeg", "-nostdin", "-v", "error", "-f", "lavfi", "-i", "testsrc2=size=640x360:rate=30:duration=1",
		"-c:v", "libvpx", "-deadline", "realtime", "-cpu-used", "8", "-g", "60", "-auto-alt-ref", "0", big).CombinedOutput(); err != nil {
		t.Fatalf("making the 640x360 clip: %v: %s", err, out)
	}
	frames := append(testutil.ReadIVF(t, filepath.Join("testdata", "video.ivf")), testutil.ReadIVF(t, big)...)
	src := newFakeSource("TR_res", webrtc.MimeTypeVP8, 90000, 0)
	rec, err := NewTrackRecorder(src, TrackOptions{Logger: quiet, Dir: dir, Name: "res"})
	if err != nil {
		t.Fatal(err)
	}
	feedFrames(src, &codecs.VP8Payloader{EnablePictureID: true}, 90000, 3000, frames, nil)
	res := rec.Stop()
	if res.Err != nil || res.Frames != len(frames) {
		t.Fatalf("%d of %d frames, err %v", res.Frames, len(frames), res.Err)
	}
	if e := testutil.DecodeErrors(t, res.File); e != "" {
		t.Fatalf("decode errors across the resolution change: %s", e)
	}
	if n := testutil.FFprobe(t, res.File).Streams[0].Frames(); n != len(frames) {
		t.Fatalf("ffprobe decodes %d frames, want %d", n, len(frames))
	}
}
