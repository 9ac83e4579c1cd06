package sfu

import (
	"bytes"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// liveSource is a video source whose layer 0 flows; it counts keyframe
// requests.
type liveSource struct {
	idleSource
	live atomic.Uint32
	asks atomic.Int32
}

func (s *liveSource) LiveLayers() uint8    { return uint8(s.live.Load()) }
func (s *liveSource) Layers() uint8        { return 1 }
func (s *liveSource) RequestKeyframe(int8) { s.asks.Add(1) }

// TestWatchdogRestartsSilentVideo: a bound, connected, unpaused video down
// track whose source flows but which has sent nothing for 3 s is restarted
// at a keyframe (once per 3 s, not on every check); then it forwards again,
// and a paused or sourceless track is left alone.
func TestWatchdogRestartsSilentVideo(t *testing.T) {
	src := &liveSource{idleSource: idleSource{kind: webrtc.RTPCodecTypeVideo, codec: vp8Codec, id: "TR_w"}}
	src.live.Store(1)
	w := &recordingWriter{}
	d := NewDownTrack(src, "PA_x")
	defer d.Close()
	d.SetTarget(0)
	if _, err := d.Bind(fakeContext{codecs: []webrtc.RTPCodecParameters{vp8Codec}, ssrc: 7, w: w}); err != nil {
		t.Fatal(err)
	}
	asks := src.asks.Load() // Bind asks once
	key, delta := benchPackets()
	hdr := &rtp.Header{Version: 2, SequenceNumber: 10, Timestamp: 1000}
	_ = d.WriteRTP(hdr, key, 0)
	d.flush(time.Second)
	if len(w.pays) != 1 {
		t.Fatalf("%d packets forwarded, want the keyframe", len(w.pays))
	}

	// Stuck: the down track waits on a layer (as if a switch never
	// completed) and nothing reaches it.
	d.mu.Lock()
	d.current = 2
	d.mu.Unlock()
	t0 := time.Now().UnixNano()
	for _, at := range []int64{0, time.Second.Nanoseconds(), 2900 * time.Millisecond.Nanoseconds()} {
		d.checkStalled(t0+at, nil)
	}
	if n := src.asks.Load(); n != asks {
		t.Fatalf("%d keyframe requests before 3 s of silence", n-asks)
	}
	restarts := ReadCounters().StallRestarts
	d.checkStalled(t0+3100*time.Millisecond.Nanoseconds(), nil)
	d.checkStalled(t0+3600*time.Millisecond.Nanoseconds(), nil)
	if n := src.asks.Load(); n != asks+1 || ReadCounters().StallRestarts != restarts+1 {
		t.Fatalf("%d keyframe requests, %d restarts after 3 s of silence, want 1 each", n-asks, ReadCounters().StallRestarts-restarts)
	}
	hdr.SequenceNumber++
	hdr.Timestamp += 3000
	_ = d.WriteRTP(hdr, delta, 0) // still waiting for a keyframe
	hdr.SequenceNumber++
	_ = d.WriteRTP(hdr, key, 0)
	d.flush(time.Second)
	if len(w.pays) != 2 || !IsKeyframeStart(CodecVP8, w.pays[1]) {
		t.Fatalf("%d packets forwarded after the restart, want the keyframe", len(w.pays))
	}

	// Paused by the subscriber, or the publisher not sending: no restart.
	asks = src.asks.Load()
	d.SetPaused(true)
	for i := int64(0); i < 10; i++ {
		d.checkStalled(t0+(4+i)*time.Second.Nanoseconds(), nil)
	}
	if n := src.asks.Load(); n != asks {
		t.Fatalf("%d keyframe requests for a paused track", n-asks)
	}
	src.live.Store(0)
	d.SetPaused(false) // asks for a keyframe itself
	asks = src.asks.Load()
	for i := int64(0); i < 10; i++ {
		d.checkStalled(t0+(14+i)*time.Second.Nanoseconds(), nil)
	}
	if n := src.asks.Load(); n != asks {
		t.Fatalf("%d keyframe requests for a track whose publisher sends nothing", n-asks)
	}
}

// TestWatchdogLogsSilentAudio: an audio down track that has sent nothing
// 10 s after it was subscribed, while its publisher sends, is logged with
// its state (once), and no keyframe is asked for; one that forwards is not
// logged.
func TestWatchdogLogsSilentAudio(t *testing.T) {
	src := &liveSource{idleSource: idleSource{kind: webrtc.RTPCodecTypeAudio, codec: opusCodec, id: "TR_a"}}
	src.live.Store(1)
	var logged bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logged, nil))
	silent := NewDownTrack(src, "PA_silent")
	defer silent.Close()
	if _, err := silent.Bind(fakeContext{codecs: []webrtc.RTPCodecParameters{opusCodec}, ssrc: 8, w: &recordingWriter{}}); err != nil {
		t.Fatal(err)
	}
	asks := src.asks.Load()
	t0 := time.Now().UnixNano()
	for _, at := range []int64{0, 5, 9} {
		silent.checkStalled(t0+at*time.Second.Nanoseconds(), log)
	}
	if logged.Len() != 0 {
		t.Fatalf("logged before 10 s: %s", logged.String())
	}
	for _, at := range []int64{10, 11, 12} {
		silent.checkStalled(t0+at*time.Second.Nanoseconds(), log)
	}
	if n := strings.Count(logged.String(), "audio down track has sent nothing"); n != 1 || !strings.Contains(logged.String(), "bound=true") {
		t.Fatalf("want one line with the state, got %d:\n%s", n, logged.String())
	}
	if n := src.asks.Load(); n != asks {
		t.Fatalf("%d keyframe requests for audio", n-asks)
	}

	logged.Reset()
	w := &recordingWriter{}
	playing := NewDownTrack(src, "PA_playing")
	defer playing.Close()
	if _, err := playing.Bind(fakeContext{codecs: []webrtc.RTPCodecParameters{opusCodec}, ssrc: 9, w: w}); err != nil {
		t.Fatal(err)
	}
	_ = playing.WriteRTP(&rtp.Header{Version: 2, SequenceNumber: 1, Timestamp: 960}, []byte{0xfc, 1, 2}, 0)
	playing.flush(time.Second)
	if len(w.pays) != 1 {
		t.Fatalf("%d audio packets forwarded, want 1", len(w.pays))
	}
	for _, at := range []int64{0, 11} {
		playing.checkStalled(t0+at*time.Second.Nanoseconds(), log)
	}
	if logged.Len() != 0 {
		t.Fatalf("a playing audio track was logged: %s", logged.String())
	}
}

// TestWatchdogLogsUnheardTrack: a down track that has sent 100 packets and
// more, sending for 30 s, whose subscriber reports receiving other tracks but never
// a packet of it (a stream the viewer cannot decrypt: issue 18), is logged
// once; one the subscriber reported receiving is not, nor is any while the
// subscriber reported receiving nothing at all (a client without reports).
func TestWatchdogLogsUnheardTrack(t *testing.T) {
	src := &liveSource{idleSource: idleSource{kind: webrtc.RTPCodecTypeAudio, codec: opusCodec, id: "TR_a"}}
	src.live.Store(1)
	var logged bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logged, nil))
	sending := func(ssrc webrtc.SSRC) (*DownTrack, *recordingWriter) {
		w := &recordingWriter{}
		d := NewDownTrack(src, "PA_x")
		if _, err := d.Bind(fakeContext{codecs: []webrtc.RTPCodecParameters{opusCodec}, ssrc: ssrc, w: w}); err != nil {
			t.Fatal(err)
		}
		hdr := &rtp.Header{Version: 2, SequenceNumber: 1, Timestamp: 960}
		for range unheardPackets + 20 {
			_ = d.WriteRTP(hdr, []byte{0xfc, 1, 2}, 0)
			d.flush(time.Second) // the audio queue is short
			hdr.SequenceNumber++
			hdr.Timestamp += 960
		}
		if sent, _ := d.Stats(); sent < unheardPackets {
			t.Fatalf("sent %d packets, want %d or more", sent, unheardPackets)
		}
		return d, w
	}
	unheard, _ := sending(8)
	defer unheard.Close()
	heard, w := sending(9)
	defer heard.Close()
	w.mu.Lock()
	last := w.hdrs[len(w.hdrs)-1].SequenceNumber
	w.mu.Unlock()
	heard.onReceiverReport(&rtcp.ReceiverReport{Reports: []rtcp.ReceptionReport{
		{SSRC: 8, LastSequenceNumber: 0}, // pion's block for a stream it got nothing of
		{SSRC: 9, LastSequenceNumber: uint32(last)},
	}})
	unheard.onReceiverReport(&rtcp.ReceiverReport{Reports: []rtcp.ReceptionReport{{SSRC: 8, LastSequenceNumber: 0}}})
	if !heard.heardFrom() || unheard.heardFrom() {
		t.Fatalf("heard: %v and %v, want true and false", heard.heardFrom(), unheard.heardFrom())
	}
	t0 := time.Now().UnixNano()
	check := func(at int64, heardAny bool) {
		for _, d := range []*DownTrack{unheard, heard} {
			d.checkStalled(t0+at*time.Second.Nanoseconds(), log)
			d.checkUnheard(t0+at*time.Second.Nanoseconds(), heardAny, log)
		}
	}
	check(0, true)
	check(29, true)
	check(31, false) // nothing reported at all: no judgement
	if logged.Len() != 0 {
		t.Fatalf("logged too early or without reports: %s", logged.String())
	}
	check(32, true)
	check(33, true)
	out := logged.String()
	if n := strings.Count(out, "never reported receiving"); n != 1 || !strings.Contains(out, "ssrc=8") {
		t.Fatalf("want one line for ssrc 8, got %d:\n%s", n, out)
	}
}
