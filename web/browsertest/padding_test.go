package browsertest

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/rtp/codecs"
	"github.com/pion/webrtc/v4"
	"github.com/starling-rtc/starling/client"
	"github.com/starling-rtc/starling/config"
	"github.com/starling-rtc/starling/internal/testutil"
	"github.com/starling-rtc/starling/protocol"
	"github.com/starling-rtc/starling/server"
	"github.com/starling-rtc/starling/sfu"
)

// videoInJS is the page's inbound video (one remote video track here):
// packets, frames assembled and decoded, and the receiver's own signs of
// trouble (freezes, keyframe requests, frames dropped).
const videoInJS = `(async () => {
  const out = {packets: 0, framesReceived: 0, framesDecoded: 0, freezes: 0, plis: 0, dropped: 0};
  const pc = window.starling?.client?.subscriber;
  if (!pc) return out;
  (await pc.getStats()).forEach((s) => {
    if (s.type !== 'inbound-rtp' || s.kind !== 'video') return;
    out.packets += s.packetsReceived || 0;
    out.framesReceived += s.framesReceived || 0;
    out.framesDecoded += s.framesDecoded || 0;
    out.freezes += s.freezeCount || 0;
    out.plis += s.pliCount || 0;
    out.dropped += s.framesDropped || 0;
  });
  return out;
})()`

type videoIn struct {
	Packets        int `json:"packets"`
	FramesReceived int `json:"framesReceived"`
	FramesDecoded  int `json:"framesDecoded"`
	Freezes        int `json:"freezes"`
	PLIs           int `json:"plis"`
	Dropped        int `json:"dropped"`
}

// gatedCamera joins room with the Go client and publishes a VP8 camera
// that loops frames at 15 fps, sending its delta frames only (which no
// down track starts on) until release is closed, then everything from the
// next keyframe. It returns the server's id of the track, and counts the
// frames it sent in sent.
//
// A frame goes out as 300-byte packets 4 ms apart, as a browser's pacer
// spreads a frame: the server forwards it over several milliseconds, and a
// probe's padding, every 20 ms, often comes while a frame is half
// forwarded (where it must wait for the frame's end: a padding packet
// between two of the frame's would split it).
func gatedCamera(t *testing.T, srv *server.Server, room string, frames [][]byte, release <-chan struct{}, sent *atomic.Int64) string {
	t.Helper()
	api, err := client.LoopbackAPI()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, srv.SignalingURL(), room, client.Options{Name: "Cam", API: api})
	if err != nil {
		t.Fatalf("the camera joins: %v", err)
	}
	video, err := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}, "cam-gated", "stream-gated")
	if err != nil {
		t.Fatal(err)
	}
	pubs, err := c.Publish(ctx, client.LocalTrack{Track: video, Source: protocol.SourceCamera, Name: "camera"})
	if err != nil || len(pubs) != 1 {
		t.Fatalf("the camera publishes: %v (%d tracks)", err, len(pubs))
	}
	stop, done := make(chan struct{}), make(chan struct{})
	pk := rtp.NewPacketizer(300, 96, 1, &codecs.VP8Payloader{EnablePictureID: true}, rtp.NewRandomSequencer(), 90000)
	go func() {
		defer close(done)
		tick := time.NewTicker(time.Second / 15)
		defer tick.Stop()
		open := false
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			f := frames[i%len(frames)]
			key := len(f) > 0 && f[0]&1 == 0 // VP8: the frame tag's bit 0 is 0 on a keyframe
			if !open {
				select {
				case <-release:
					open = key
				default:
				}
				if key && !open {
					continue // held back: deltas only, the stream cannot start
				}
			}
			sent.Add(1)
			for j, pkt := range pk.Packetize(f, 90000/15) {
				if j > 0 {
					time.Sleep(4 * time.Millisecond) // the pacing of a frame's packets, not a wait for anything
				}
				if err := video.WriteRTP(pkt); err != nil {
					return
				}
			}
		}
	}()
	t.Cleanup(func() {
		close(stop)
		<-done
		c.Close()
	})
	return pubs[0].ID
}

// TestProbePaddingKeepsDecoding: a subscriber in Chromium keeps decoding
// when the server sends bandwidth-probe padding on its video stream:
//   - before the stream's first media (padding-only packets on the
//     negotiated SSRC, the first media packet after them: sfu.Munger.Pad),
//   - while the video flows (between frames, never inside one),
//   - and while the track is paused for bandwidth, then resumed.
//
// After each, framesDecoded must keep rising: a receiver that took the
// padding for a broken stream would freeze until a keyframe, or never
// start. The server runs without congestion control so that the test, not
// the allocator, decides when to pause and probe (the padding path is the
// same: Subscriber.Probe, DownTrack.WritePadding).
func TestProbePaddingKeepsDecoding(t *testing.T) {
	inPageLane(t)
	start := time.Now()
	b := launchChromium(t)
	srv := startServer(t, func(c *config.Config) { c.RTC.CongestionControl = false })
	const room = "browser-padding"
	frames := testVideo(t) // 320×180, 15 fps, a keyframe every second
	p := b.newPage("A")
	idA := joinRoom(p, "http://"+srv.Addr(), room, "Ann")
	release := make(chan struct{})
	var camFrames atomic.Int64
	trackID := gatedCamera(t, srv, room, frames, release, &camFrames)

	sub := srv.Rooms().Room(room).Participant(idA).Subscriber()
	var d *sfu.DownTrack
	if !testutil.Poll(10*time.Second, func() bool { d = sub.DownTrack(trackID); return d != nil }) {
		t.Fatal("no down track of the camera for the page")
	}
	stats := func() videoIn {
		t.Helper()
		var s videoIn
		p.mustEval(videoInJS, &s)
		return s
	}
	padded := atomic.Int64{}
	probe := func(what string) {
		t.Helper()
		before := sfu.ReadCounters().BWEPaddingSent
		if !testutil.Poll(5*time.Second, func() bool { return sub.Probe(600_000, 300*time.Millisecond) }) {
			t.Fatalf("%s: probe refused", what)
		}
		if !testutil.Poll(5*time.Second, func() bool { return !sub.Probing() }) {
			t.Fatalf("%s: the probe did not end", what)
		}
		padded.Add(int64(sfu.ReadCounters().BWEPaddingSent - before))
	}

	// Before the first media: probe until the page has received packets
	// (the subscription negotiated and connected), none of them a frame.
	var s0 videoIn
	if !testutil.Poll(15*time.Second, func() bool {
		probe("before media")
		s0 = stats()
		return s0.Packets > 0
	}) {
		t.Fatalf("the page received no padding before the first media: %+v", s0)
	}
	if s0.FramesReceived != 0 || s0.FramesDecoded != 0 {
		t.Fatalf("frames before the camera sent a keyframe: %+v", s0)
	}
	t.Logf("before the first media: the page received %d packets (%d padding written by the server's probes), no frame", s0.Packets, padded.Load())

	close(release)
	s1, dt := waitFor(p, "video decoded after padding-only packets", 15*time.Second, videoInJS, func(s videoIn) bool { return s.FramesDecoded > 0 })
	t.Logf("first frame decoded %v after the camera's first keyframe was let through: %+v", dt.Round(time.Millisecond), s1)

	// While the video flows: three probes, their padding between frames.
	padded.Store(0)
	s2 := stats()
	c2 := camFrames.Load()
	for range 3 {
		probe("while flowing")
	}
	s3, _ := waitFor(p, "video still decoding after padding while flowing", 10*time.Second, videoInJS,
		func(s videoIn) bool { return s.FramesDecoded >= s2.FramesDecoded+20 })
	sent := int(camFrames.Load() - c2)
	t.Logf("while flowing: %d padding packets; %+v -> %+v; the camera sent %d frames", padded.Load(), s2, s3, sent)
	if padded.Load() == 0 {
		t.Error("the probes while the video flowed wrote no padding")
	}
	// Every frame sent decoded (a few in flight at either end), none
	// dropped: a padding packet inside a frame (before sfu's
	// writePadding waited for a frame's end, or while it let a keyframe
	// of over 100 ms be split) lost that frame and the second of video
	// after it: 14-22 frames dropped of 33-48 sent.
	if s3.Dropped > s2.Dropped || s3.FramesDecoded-s2.FramesDecoded < sent-5 {
		t.Errorf("padding while the video flowed: %d frames decoded and %d dropped of %d sent", s3.FramesDecoded-s2.FramesDecoded, s3.Dropped-s2.Dropped, sent)
	}

	// Paused for bandwidth (as the allocator does: DownTrack.SetLimits with
	// no layer), probed, resumed.
	padded.Store(0)
	capL, _ := d.Limits()
	d.SetLimits(capL, -1)
	probe("paused")
	sPaused := stats()
	probe("paused")
	s4 := stats()
	if s4.Packets <= sPaused.Packets {
		t.Errorf("no packet reached the page during a probe while paused (%d before it, %d after)", sPaused.Packets, s4.Packets)
	}
	d.SetLimits(capL, capL)
	s5, dt := waitFor(p, "video decoding again after padding while paused", 15*time.Second, videoInJS,
		func(s videoIn) bool { return s.FramesDecoded >= s4.FramesDecoded+20 })
	t.Logf("paused: %d padding packets; resumed, 20 more frames decoded %v after the resume: %+v", padded.Load(), dt.Round(time.Millisecond), s5)
	// Freezes are logged, not judged: the pause is one, and a starved
	// machine (load 77: 4 in one run) makes more.
	t.Logf("%d freezes since the first frame (the pause is one)", s5.Freezes-s1.Freezes)
	t.Logf("whole test: %v", time.Since(start).Round(time.Millisecond))
}
