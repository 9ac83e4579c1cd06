package server_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/starling-rtc/starling/client"
	"github.com/starling-rtc/starling/config"
	"github.com/starling-rtc/starling/internal/testutil"
	"github.com/starling-rtc/starling/protocol"
)

// TestGStreamerWebSocket: GStreamer's webrtcbin as a participant on the
// WebSocket signaling (testdata/gst_ws.py, not WHIP) publishes VP8 and Opus
// to a Go client and decodes the Go client's. webrtcbin trickles candidates
// with an m-line index and no sdpMid, offers max-bundle with bundle-only
// sections, writes its msid only in a=ssrc lines (the server once refused
// its offer: "track is not sent by any media section") and spells Opus
// "OPUS" (Track.codec once said "audio/OPUS").
func TestGStreamerWebSocket(t *testing.T) {
	parallelUnlessRace(t) // every step awaited, with deadlines of tens of seconds
	requireGStreamer(t)
	requireAiortc(t) // python3-websockets comes with it
	m := makeTestMedia(t)
	// libnice gathers on loopback only when told (--local-ip): on its own
	// it leaves loopback out and ties each socket to its interface, and its
	// UDP checks to the server's 127.0.0.1 leave through eth0 (assertGstUDP).
	// No ICE-TCP (as gstServer): UDP or nothing. A Python peer on a busy
	// machine may take seconds to answer an offer (seen timing out at the
	// tests' 5 s with the machine loaded 30 deep).
	srv := startServer(t, func(c *config.Config) {
		c.RTC.TCPPort = -1
		c.Room.NegotiationTimeout = config.Duration(30 * time.Second)
	})
	goPeer := join(t, srv, "gst-ws", "go")
	files := newTrackFiles(t.TempDir())
	goPeer.OnTrack(func(rt *client.RemoteTrack) { files.record(t, rt.Track) })
	video, audio := mediaTracks(t, "go")
	if _, err := goPeer.Publish(ctxT(t, 10*time.Second),
		client.LocalTrack{Track: video, Source: protocol.SourceCamera},
		client.LocalTrack{Track: audio, Source: protocol.SourceMicrophone}); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	wg := sendMedia(t, m, video, audio, stop)
	defer func() { close(stop); wg.Wait() }()

	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	gst, err := startPyPeer(ctx, "testdata/gst_ws.py", srv.SignalingURL(), "gst-ws", "--name", "gstreamer",
		"--seconds", "60", "--want-video", "30", "--want-audio", "50", "--local-ip", "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	defer gst.release()
	fail := func(format string, args ...any) {
		t.Helper()
		_ = gst.stdin.Close()
		<-gst.done
		t.Fatalf(format+"\ngst_ws.py (%v):\n%s", append(args, gst.err, gst.out)...)
	}
	var gstID string
	select {
	case gstID = <-gst.joined:
	case <-gst.done:
		fail("GStreamer never joined")
	}
	// Its tracks are announced with the usual codec spelling.
	for _, kind := range []string{"audio", "video"} {
		ev, err := goPeer.WaitEvent(ctxT(t, 20*time.Second), protocol.NotifyTrackPublished, func(raw json.RawMessage) bool {
			var p protocol.TrackParams
			return json.Unmarshal(raw, &p) == nil && p.Track.ParticipantID == gstID && p.Track.Kind == kind
		})
		if err != nil {
			fail("no trackPublished for GStreamer's %s: %v", kind, err)
		}
		var p protocol.TrackParams
		_ = json.Unmarshal(ev.Params, &p)
		if want := map[string]string{"audio": "audio/opus", "video": "video/VP8"}[kind]; p.Track.Codec != want {
			t.Errorf("GStreamer's %s track has codec %q, want %q", kind, p.Track.Codec, want)
		}
	}
	select {
	case <-gst.met:
	case <-gst.done:
		fail("GStreamer ended before it decoded the Go client's media")
	case <-time.After(40 * time.Second):
		fail("GStreamer did not decode 30 video frames and 50 audio buffers from the Go client in 40 s")
	}
	waitFor(t, 20*time.Second, "GStreamer's video and audio at the Go client", func() bool {
		return files.count("video") >= 60 && files.count("audio") >= 50
	})
	gst.release()
	t.Logf("gst_ws.py:\n%s", gst.out)
	if gst.err != nil || !gst.summary.Met {
		t.Fatalf("gst_ws.py: %v", gst.err)
	}
	if ice := gst.summary.ICE; ice["publisher"] != "udp" || ice["subscriber"] != "udp" {
		t.Errorf("GStreamer's ICE pairs are %v, want UDP for both connections", ice)
	}
	goPeer.Close()
	files.wg.Wait()
	if n := testutil.DecodedFrames(t, files.files["video"]); n < 30 {
		t.Errorf("ffprobe decoded %d frames of GStreamer's video, want >= 30", n)
	}
}
