package server_test

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"
	"github.com/pion/webrtc/v4/pkg/media"
	"github.com/pion/webrtc/v4/pkg/media/h264reader"
	"github.com/pion/webrtc/v4/pkg/media/h264writer"
	"github.com/starling-rtc/starling/internal/testutil"
)

var (
	h264Once sync.Once
	h264File string
	h264Err  error
)

// h264Media encodes a few seconds of H.264 (baseline, no B-frames: what OBS
// and ffmpeg send over WHIP) once per test binary.
func h264Media(t *testing.T) string {
	t.Helper()
	testutil.RequireTool(t, "ffmpeg")
	testutil.RequireTool(t, "ffprobe")
	h264Once.Do(func() {
		dir, err := os.MkdirTemp("", "starling-whip-h264")
		if err != nil {
			h264Err = err
			return
		}
		h264File = filepath.Join(dir, "v.h264")
		out, err := exec.Command("ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=30:duration=4",
			"-c:v", "libx264", "-profile:v", "baseline", "-bf", "0", "-g", "15", "-pix_fmt", "yuv420p", "-f", "h264", h264File).CombinedOutput()
		if err != nil {
			h264Err = errors.New("ffmpeg: " + err.Error() + ": " + string(out))
		}
	})
	if h264Err != nil {
		t.Fatal(h264Err)
	}
	return h264File
}

// sendH264 loops the file into track one access unit per frame, in real time.
func sendH264(path string, track *webrtc.TrackLocalStaticSample, stop <-chan struct{}) {
	tick := time.NewTicker(time.Second / 30)
	defer tick.Stop()
	for {
		f, err := os.Open(path)
		if err != nil {
			return
		}
		r, err := h264reader.NewReader(f)
		if err != nil {
			f.Close()
			return
		}
		var au []byte
		for {
			nal, err := r.NextNAL()
			if err != nil {
				break
			}
			au = append(au, 0, 0, 0, 1)
			au = append(au, nal.Data...)
			if nal.UnitType != h264reader.NalUnitTypeCodedSliceNonIdr && nal.UnitType != h264reader.NalUnitTypeCodedSliceIdr {
				continue // SPS, PPS, SEI go with the frame that follows
			}
			select {
			case <-stop:
				f.Close()
				return
			case <-tick.C:
			}
			_ = track.WriteSample(media.Sample{Data: au, Duration: time.Second / 30})
			au = nil
		}
		f.Close()
	}
}

// An H.264 publisher (OBS, ffmpeg) watched by a WHEP player that offers
// VP8 first: the answer keeps every codec both sides have, so the H.264
// track binds to the offered video section and the player decodes it.
func TestWHEPWatchesH264(t *testing.T) {
	parallelUnlessRace(t) // an ffmpeg-made file decoded by ffprobe; nothing timed
	file := h264Media(t)
	srv := startServer(t, nil)
	observer := join(t, srv, "h264", "observer")

	pub := plainPC(t, plainAPI(t, nil), webrtc.Configuration{})
	video, err := webrtc.NewTrackLocalStaticSample(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeH264, ClockRate: 90000,
		SDPFmtpLine: "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f"}, "video", "obs")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pub.AddTransceiverFromTrack(video, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly}); err != nil {
		t.Fatal(err)
	}
	postOffer(t, srv, "/v1/rooms/h264/whip?name=obs", "", pub)
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() { defer close(done); sendH264(file, video, stop) }()
	t.Cleanup(func() { close(stop); <-done })
	if _, err := observer.WaitEvent(ctxT(t, 10*time.Second), "trackPublished", nil); err != nil {
		t.Fatal(err)
	}

	viewer := receivingPC(t, plainAPI(t, nil), webrtc.Configuration{})
	out := filepath.Join(t.TempDir(), "got.h264")
	w, err := h264writer.New(out)
	if err != nil {
		t.Fatal(err)
	}
	type result struct {
		mime    string
		packets int
	}
	got := make(chan result, 1)
	viewer.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		if tr.Kind() != webrtc.RTPCodecTypeVideo {
			return
		}
		n := 0
		for n < 150 {
			pkt, _, err := tr.ReadRTP()
			if err != nil {
				break
			}
			if len(pkt.Payload) == 0 {
				continue
			}
			_ = w.WriteRTP(pkt)
			n++
		}
		got <- result{tr.Codec().MimeType, n}
	})
	postOffer(t, srv, "/v1/rooms/h264/whep", "", viewer)
	var r result
	select {
	case r = <-got:
	case <-time.After(20 * time.Second):
		t.Fatal("no H.264 video at the WHEP viewer in 20 s")
	}
	_ = w.Close()
	if r.mime != webrtc.MimeTypeH264 || r.packets < 150 {
		t.Fatalf("WHEP viewer got %d packets of %s, want 150 of H.264", r.packets, r.mime)
	}
	n := testutil.DecodedFrames(t, out)
	t.Logf("WHEP viewer: %d H.264 packets, ffprobe decoded %d frames", r.packets, n)
	if n < 30 {
		t.Errorf("ffprobe decoded %d H.264 frames, want >= 30", n)
	}
}
