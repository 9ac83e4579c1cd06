package browsertest

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"
	"github.com/pion/webrtc/v4/pkg/media"
	"github.com/starling-rtc/starling/client"
	"github.com/starling-rtc/starling/internal/testutil"
	"github.com/starling-rtc/starling/protocol"
	"github.com/starling-rtc/starling/server"
)

// testVideo returns the frames of a short VP8 clip (320×180, 15 fps, a
// keyframe every second) made with ffmpeg, or skips/fails the test without it.
func testVideo(t *testing.T) [][]byte {
	t.Helper()
	ffmpeg := findBrowser(t, "STARLING_FFMPEG", "ffmpeg", "ffmpeg")
	path := filepath.Join(t.TempDir(), "clip.ivf")
	out, err := exec.Command(ffmpeg, "-loglevel", "error", "-f", "lavfi", "-i", "testsrc2=size=320x180:rate=15:duration=2",
		"-c:v", "libvpx", "-b:v", "200k", "-deadline", "realtime", "-cpu-used", "8", "-g", "15", "-auto-alt-ref", "0", path).CombinedOutput()
	if err != nil {
		t.Fatalf("ffmpeg: %v\n%s", err, out)
	}
	frames := testutil.ReadIVF(t, path)
	if len(frames) == 0 {
		t.Fatal("ffmpeg made no frames")
	}
	return frames
}

// goParticipant joins room with the Go client and publishes a camera track
// that loops frames at 15 fps until the test ends (the server forwards a
// track once its first packets arrive).
func goParticipant(t *testing.T, srv *server.Server, room, name, id string, frames [][]byte) *client.Client {
	t.Helper()
	api, err := client.LoopbackAPI()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, srv.SignalingURL(), room, client.Options{Name: name, API: api})
	if err != nil {
		t.Fatalf("%s joins: %v", name, err)
	}
	video, err := webrtc.NewTrackLocalStaticSample(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}, "cam-"+id, "stream-"+id)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Publish(ctx, client.LocalTrack{Track: video, Source: protocol.SourceCamera, Name: "camera"}); err != nil {
		t.Fatalf("%s publishes: %v", name, err)
	}
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(time.Second / 15)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			if err := video.WriteSample(media.Sample{Data: frames[i%len(frames)], Duration: time.Second / 15}); err != nil {
				return
			}
		}
	}()
	t.Cleanup(func() {
		close(stop)
		<-done
		c.Close()
	})
	return c
}

// TestLargeRoomSpeakerView: with seven people (six Go clients with a camera
// track each, and the page) the app opens in speaker view: one tile on the
// stage, as many as fit in the strip, and the rest hidden; the video of every
// hidden tile is paused at the server (subscriptionUpdated "paused"), the
// shown ones are not. Pinning a hidden participant puts it on the stage and
// resumes its video.
func TestLargeRoomSpeakerView(t *testing.T) {
	inPageLane(t)
	start := time.Now()
	b := launchChromium(t)
	srv := startServer(t)
	const room = "browser-large"
	frames := testVideo(t)
	for i := 1; i <= 6; i++ {
		goParticipant(t, srv, room, fmt.Sprintf("Guest %d", i), fmt.Sprint(i), frames)
	}
	p := b.newPage("A")
	joinRoom(p, "http://"+srv.Addr(), room, "Ann")

	type tileView struct {
		ID       string `json:"id"`
		Name     string `json:"name"`
		Hidden   bool   `json:"hidden"`
		Featured bool   `json:"featured"`
		Track    string `json:"track"`
		Layer    string `json:"layer"`
	}
	type view struct {
		Layout string     `json:"layout"`
		Tiles  []tileView `json:"tiles"`
	}
	// A remote video track's tile is found through the participant: the app
	// keeps the subscription state by track id.
	const viewJS = `(() => {
	  const s = window.starling.state, c = window.starling.client;
	  const trackOf = (pid) => [...c.remoteTracks.values()].find((rt) => rt.participantId === pid && rt.kind === 'video')?.trackId ?? '';
	  return {layout: document.querySelector('#grid').dataset.layout,
	    tiles: [...document.querySelectorAll('#grid .tile.remote')].map((el) => {
	      const id = el.dataset.participantId, track = trackOf(id);
	      return {id, name: el.querySelector('.name').textContent, hidden: el.hidden, featured: el.classList.contains('featured'),
	        track, layer: s.layers[track]?.layer ?? ''};
	    })};
	})()`
	settled := func(v view) bool {
		if v.Layout != "speaker" || len(v.Tiles) != 6 {
			return false
		}
		for _, tl := range v.Tiles {
			if tl.Track == "" || (tl.Hidden != (tl.Layer == "paused")) {
				return false
			}
		}
		return true
	}
	v, d := waitFor(p, "speaker view with the hidden tiles paused", 20*time.Second, viewJS, settled)
	t.Logf("settled after %v", d.Round(time.Millisecond))
	hidden, featured := 0, 0
	var hiddenID string
	for _, tl := range v.Tiles {
		t.Logf("  %-8s hidden=%-5v featured=%-5v layer=%s", tl.Name, tl.Hidden, tl.Featured, tl.Layer)
		if tl.Hidden {
			hidden++
			hiddenID = tl.ID
		}
		if tl.Featured {
			featured++
		}
	}
	if featured != 1 || hidden == 0 {
		t.Errorf("%d featured and %d hidden tiles of 6, want 1 featured and some hidden", featured, hidden)
	}
	waitFor(p, "the stage video plays", 10*time.Second, `document.querySelector('#grid .tile.featured video')?.videoWidth > 0`,
		func(ok bool) bool { return ok })
	p.screenshot("speaker-view-7-people-chromium.png")

	// Pin a hidden participant: it takes the stage and its video resumes.
	p.mustEval(fmt.Sprintf(`document.querySelector('#grid .tile.remote[data-participant-id=%q] .pin').click(); true`, hiddenID), nil)
	waitFor(p, "pinned tile on the stage, unpaused", 10*time.Second, viewJS, func(v view) bool {
		for _, tl := range v.Tiles {
			if tl.ID == hiddenID {
				return tl.Featured && !tl.Hidden && tl.Layer != "paused" && tl.Layer != ""
			}
		}
		return false
	})
	t.Logf("whole test: %v", time.Since(start).Round(time.Millisecond))
}
