package server_test

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"regexp"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/starling-rtc/starling/client"
	"github.com/starling-rtc/starling/config"
	"github.com/starling-rtc/starling/internal/testutil"
	"github.com/starling-rtc/starling/protocol"
	"github.com/starling-rtc/starling/server"
)

const gstScript = "testdata/gst_whip.py"

// requireGStreamer skips the test outside CI when Debian's GStreamer WebRTC
// pieces are missing (.ci/run installs them) and fails it inside CI.
func requireGStreamer(t *testing.T) {
	t.Helper()
	testutil.RequirePython(t, gstScript, "GStreamer webrtcbin",
		"gstreamer1.0-plugins-bad gstreamer1.0-plugins-good gstreamer1.0-nice python3-gst-1.0 gir1.2-gst-plugins-bad-1.0 gir1.2-nice-0.1")
}

// gst runs the GStreamer client and returns its output; safe on any goroutine.
func gst(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "/usr/bin/python3", append([]string{gstScript}, args...)...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("gst_whip.py %v: %w\n%s", args, err, out)
	}
	return string(out), nil
}

// runGst is gst that fails the test on error.
func runGst(t *testing.T, args ...string) string {
	t.Helper()
	out, err := gst(args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// GStreamer's own WebRTC stack publishes test video and audio over WHIP; a
// Starling (pion) subscriber decodes them.
func TestGStreamerWHIP(t *testing.T) {
	// GStreamer publishes until the subscriber has what is asked for (60 s
	// at most): nothing is judged on time. (It published for a fixed 8 s,
	// which on a busy machine, its connection and software encoder slow,
	// was once not enough for 60 video packets.)
	parallelUnlessRace(t)
	requireGStreamer(t)
	testutil.RequireTool(t, "ffprobe")
	srv := gstServer(t)
	watcher := join(t, srv, "gst", "watcher")
	sink := &mediaSink{dir: t.TempDir()}
	watcher.OnTrack(func(rt *client.RemoteTrack) { sink.start(t, rt.Track) })

	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "/usr/bin/python3", gstScript, "whip", "http://"+srv.Addr()+"/v1/rooms/gst/whip?name=gstreamer",
		"--seconds", "60", "--until-eof", "--local-ip", "127.0.0.1")
	var outBuf syncBuffer
	cmd.Stdout, cmd.Stderr = &outBuf, &outBuf
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var waited sync.Once
	var waitErr error
	wait := func() error { waited.Do(func() { waitErr = cmd.Wait() }); return waitErr }
	defer func() {
		stdin.Close()
		cancel()
		_ = wait()
	}()
	if _, err := watcher.WaitEvent(ctxT(t, 30*time.Second), protocol.NotifyParticipantJoined, participantJoinedNamed("gstreamer")); err != nil {
		t.Fatalf("GStreamer publisher not seen: %v\n%s", err, outBuf.String())
	}
	// More than the files are asked for below: the video file starts at
	// the first keyframe the subscriber gets.
	waitFor(t, 60*time.Second, "GStreamer video and audio at the subscriber", func() bool {
		return sink.videoFrames.Load() >= 90 && sink.audioPackets.Load() >= 75
	})
	stdin.Close() // GStreamer stops publishing and DELETEs its session
	if err := wait(); err != nil {
		t.Fatalf("gst_whip.py: %v\n%s", err, outBuf.String())
	}
	out := outBuf.String()
	t.Logf("gst_whip.py: %s", out)
	assertGstUDP(t, out)
	watcher.Close()
	for _, f := range sink.filesOf("video") {
		n := testutil.DecodedFrames(t, f)
		t.Logf("%s: ffprobe decoded %d frames", f, n)
		if n < 60 {
			t.Errorf("%s: decoded %d video frames from GStreamer, want >= 60", f, n)
		}
	}
	for _, f := range sink.filesOf("audio") {
		if n := testutil.DecodedFrames(t, f); n < 50 {
			t.Errorf("%s: decoded %d audio frames from GStreamer, want >= 50", f, n)
		}
	}
}

// syncBuffer is a bytes.Buffer a child process writes while the test reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

var gstDecoded = regexp.MustCompile(`video_frames=(\d+) audio_buffers=(\d+) width=(\d+) deleted=(\d+)`)

// gstServer starts a server without ICE-TCP: GStreamer then gets through
// over UDP or not at all. With both, libnice (controlling, regular
// nomination) nominates the first pair that succeeds, and on loopback a TCP
// pair (the server's active TCP to libnice's passive candidate) sometimes
// wins by a few milliseconds over the UDP pair of higher priority.
func gstServer(t *testing.T) *server.Server {
	return startServer(t, func(c *config.Config) { c.RTC.TCPPort = -1 })
}

// assertGstUDP checks that GStreamer's ICE pair was UDP. The server binds
// its media to 127.0.0.1 in tests; libnice leaves loopback out of the
// addresses it gathers on and ties each host socket to its interface
// (IP_UNICAST_IF), so its packets to 127.0.0.1 leave through eth0 and are
// lost, and GStreamer got through over ICE-TCP only. gst_whip.py
// --local-ip 127.0.0.1 makes libnice gather on loopback, as a client on
// the server's own network gathers on that network (docs/whip.md).
func assertGstUDP(t *testing.T, out string) {
	t.Helper()
	if !regexp.MustCompile(`\bice=udp\b`).MatchString(out) {
		t.Errorf("GStreamer's ICE pair is not UDP (gst_whip.py: %s)", out)
	}
}

// GStreamer watches a room over WHEP and decodes what a WHIP publisher sends.
func TestGStreamerWHEP(t *testing.T) {
	// GStreamer watches until it decoded 2 s of video and 1 s of audio
	// (at most 30 s: a busy machine decodes slower than real time).
	parallelUnlessRace(t)
	requireGStreamer(t)
	m := makeTestMedia(t)
	srv := gstServer(t)
	publishWHIP(t, srv, "gstwatch", "?name=pub", "", m, nil)
	observer := join(t, srv, "gstwatch", "observer")
	// The track is announced on its first packet, once the WHIP
	// publisher's connection is up: like a join, that took over 10 s on a
	// busy machine (DTLS retransmits back off from 1 s). On a busy machine
	// it can also come before the observer's join, which then lists it.
	published := false
	for _, p := range observer.Join.Participants {
		published = published || len(p.Tracks) > 0
	}
	if !published {
		if _, err := observer.WaitEvent(ctxT(t, 30*time.Second), protocol.NotifyTrackPublished, nil); err != nil {
			t.Fatal(err)
		}
	}
	out := runGst(t, "whep", "http://"+srv.Addr()+"/v1/rooms/gstwatch/whep?name=gst-viewer", "--seconds", "30", "--until", "60,50",
		"--local-ip", "127.0.0.1")
	t.Logf("gst_whip.py: %s", out)
	assertGstUDP(t, out)
	mm := gstDecoded.FindStringSubmatch(out)
	if mm == nil {
		t.Fatalf("no decode summary in the output")
	}
	frames, _ := strconv.Atoi(mm[1])
	audio, _ := strconv.Atoi(mm[2])
	width, _ := strconv.Atoi(mm[3])
	if frames < 60 || audio < 50 || width != 320 || mm[4] != "200" {
		t.Errorf("GStreamer decoded %d video frames (width %d), %d audio buffers, DELETE %s; want >= 60, 320, >= 50, 200",
			frames, width, audio, mm[4])
	}
}
