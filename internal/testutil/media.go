package testutil

import (
	"bytes"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"
	"github.com/pion/webrtc/v4/pkg/media"
	"github.com/pion/webrtc/v4/pkg/media/ivfreader"
	"github.com/pion/webrtc/v4/pkg/media/oggreader"
)

// ReadIVF reads the frames of an IVF file (VP8, VP9, AV1).
func ReadIVF(t testing.TB, path string) [][]byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, _, err := ivfreader.NewWith(f)
	if err != nil {
		t.Fatal(err)
	}
	var frames [][]byte
	for {
		fr, _, err := r.ParseNextFrame()
		if errors.Is(err, io.EOF) {
			return frames
		}
		if err != nil {
			t.Fatal(err)
		}
		frames = append(frames, fr)
	}
}

// ReadOgg reads the Opus packets of an Ogg file written one packet per
// page (ffmpeg -page_duration 20000), without the OpusHead and OpusTags
// headers.
func ReadOgg(t testing.TB, path string) [][]byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, _, err := oggreader.NewWith(f)
	if err != nil {
		t.Fatal(err)
	}
	var pkts [][]byte
	for {
		p, _, err := r.ParseNextPage()
		if errors.Is(err, io.EOF) {
			return pkts
		}
		if err != nil {
			t.Fatal(err)
		}
		if bytes.HasPrefix(p, []byte("OpusTags")) || bytes.HasPrefix(p, []byte("OpusHead")) {
			continue
		}
		pkts = append(pkts, p)
	}
}

var (
	mediaOnce sync.Once
	mediaDir  string
	mediaErr  error
)

// TestMedia returns 4 s of real VP8 video (IVF, 320x240 at 30 fps, a
// keyframe every 15 frames) and Opus audio (Ogg, a 440 Hz tone, one 20 ms
// packet per page), encoded by ffmpeg once per test binary. Without ffmpeg
// the test is skipped outside CI and fails inside it.
func TestMedia(t testing.TB) (ivf, ogg string) {
	t.Helper()
	RequireFFmpeg(t)
	mediaOnce.Do(func() {
		if mediaDir, mediaErr = os.MkdirTemp("", "starling-test-media"); mediaErr != nil {
			return
		}
		out, err := exec.Command("ffmpeg", "-v", "error", "-y",
			"-f", "lavfi", "-i", "testsrc2=size=320x240:rate=30:duration=4",
			"-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000:duration=4",
			"-map", "0:v", "-c:v", "libvpx", "-b:v", "400k", "-deadline", "realtime", "-cpu-used", "8", "-g", "15", "-auto-alt-ref", "0",
			filepath.Join(mediaDir, "v.ivf"),
			"-map", "1:a", "-ac", "2", "-c:a", "libopus", "-b:a", "48k", "-frame_duration", "20", "-page_duration", "20000",
			filepath.Join(mediaDir, "a.ogg")).CombinedOutput()
		if err != nil {
			mediaErr = errors.New("ffmpeg: " + err.Error() + ": " + string(out))
		}
	})
	if mediaErr != nil {
		t.Fatal(mediaErr)
	}
	return filepath.Join(mediaDir, "v.ivf"), filepath.Join(mediaDir, "a.ogg")
}

// MediaTracks makes a VP8 and an Opus sample track of one stream.
func MediaTracks(t testing.TB, videoID, audioID, stream string) (video, audio *webrtc.TrackLocalStaticSample) {
	t.Helper()
	video, err := webrtc.NewTrackLocalStaticSample(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}, videoID, stream)
	if err != nil {
		t.Fatal(err)
	}
	audio, err = webrtc.NewTrackLocalStaticSample(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2}, audioID, stream)
	if err != nil {
		t.Fatal(err)
	}
	return video, audio
}

// SendMedia loops the IVF video (30 fps) and the Ogg audio (one 20 ms
// packet a page) of TestMedia into the tracks in real time until stop is
// closed; the WaitGroup is done when both goroutines have returned.
func SendMedia(ivf, ogg string, video, audio *webrtc.TrackLocalStaticSample, stop <-chan struct{}) *sync.WaitGroup {
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(time.Second / 30)
		defer tick.Stop()
		for {
			f, err := os.Open(ivf)
			if err != nil {
				return
			}
			r, _, err := ivfreader.NewWith(f)
			if err != nil {
				f.Close()
				return
			}
			for {
				frame, _, err := r.ParseNextFrame()
				if err != nil {
					break
				}
				select {
				case <-stop:
					f.Close()
					return
				case <-tick.C:
				}
				_ = video.WriteSample(media.Sample{Data: frame, Duration: time.Second / 30})
			}
			f.Close()
		}
	}()
	go func() {
		defer wg.Done()
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			f, err := os.Open(ogg)
			if err != nil {
				return
			}
			r, _, err := oggreader.NewWith(f)
			if err != nil {
				f.Close()
				return
			}
			var last uint64
			for {
				page, hdr, err := r.ParseNextPage()
				if err != nil {
					break
				}
				if hdr.GranulePosition == 0 || len(page) == 0 {
					continue // OpusHead, OpusTags
				}
				d := time.Duration(hdr.GranulePosition-last) * time.Second / 48000
				last = hdr.GranulePosition
				select {
				case <-stop:
					f.Close()
					return
				case <-tick.C:
				}
				_ = audio.WriteSample(media.Sample{Data: page, Duration: d})
			}
			f.Close()
		}
	}()
	return &wg
}

// VP8RTPTrack is a VP8 RTP track "cam" of stream "stream", for a test that
// writes its own packets.
func VP8RTPTrack(t testing.TB) *webrtc.TrackLocalStaticRTP {
	t.Helper()
	tr, err := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}, "cam", "stream")
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

// OpusRTPTrack is a stereo Opus RTP track "mic" of stream "stream".
func OpusRTPTrack(t testing.TB) *webrtc.TrackLocalStaticRTP {
	t.Helper()
	tr, err := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2}, "mic", "stream")
	if err != nil {
		t.Fatal(err)
	}
	return tr
}
