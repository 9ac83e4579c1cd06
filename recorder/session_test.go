package recorder_test

import (
	"context"
	"io"
	"log/slog"
	"math"
	"math/rand"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
	"github.com/pion/webrtc/v4/pkg/media"
	"github.com/starling-rtc/starling/client"
	"github.com/starling-rtc/starling/config"
	"github.com/starling-rtc/starling/internal/testutil"
	"github.com/starling-rtc/starling/internal/testutil/testnode"
	"github.com/starling-rtc/starling/protocol"
	"github.com/starling-rtc/starling/recorder"
	"github.com/starling-rtc/starling/server"
)

func testLogger() *slog.Logger {
	var w io.Writer = io.Discard
	if os.Getenv("STARLING_TEST_LOG") != "" {
		w = os.Stderr
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// startServer runs a node on loopback with free ports.
func startServer(t testing.TB) *server.Server {
	t.Helper()
	cfg := testnode.Config()
	cfg.Room.EmptyTimeout = config.Duration(200 * time.Millisecond)
	srv, err := server.New(cfg, testLogger())
	if err != nil {
		t.Fatalf("server.New: %v", err)
	}
	srv.Serve()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	})
	return srv
}

// dropper is an interceptor that loses a share of outgoing RTP packets
// (retransmissions included), like a lossy uplink.
type dropper struct {
	interceptor.NoOp
	rate    float64
	mu      sync.Mutex
	rng     *rand.Rand
	dropped atomic.Int64
	sent    atomic.Int64
}

func (d *dropper) NewInterceptor(string) (interceptor.Interceptor, error) { return d, nil }

func (d *dropper) BindLocalStream(_ *interceptor.StreamInfo, w interceptor.RTPWriter) interceptor.RTPWriter {
	return interceptor.RTPWriterFunc(func(h *rtp.Header, payload []byte, a interceptor.Attributes) (int, error) {
		d.mu.Lock()
		drop := d.rng.Float64() < d.rate
		d.mu.Unlock()
		d.sent.Add(1)
		if drop {
			d.dropped.Add(1)
			return h.MarshalSize() + len(payload), nil
		}
		return w.Write(h, payload, a)
	})
}

// loopbackAPI is the client's loopback API, with an optional dropper
// closest to the network.
func loopbackAPI(t testing.TB, d *dropper) *webrtc.API {
	t.Helper()
	if d == nil {
		return testutil.PlainAPI(t, nil, nil)
	}
	return testutil.PlainAPI(t, []interceptor.Factory{d}, nil)
}

func join(t testing.TB, srv *server.Server, room, name string, api *webrtc.API) *client.Client {
	t.Helper()
	if api == nil {
		api = loopbackAPI(t, nil)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, srv.SignalingURL(), room, client.Options{Name: name, API: api})
	if err != nil {
		t.Fatalf("%s joins %s: %v", name, room, err)
	}
	t.Cleanup(c.Close)
	return c
}

// filePublisher publishes the VP8 and Opus test files as real encoded
// frames through TrackLocalStaticSample, paced in real time.
type filePublisher struct {
	name         string
	video, audio *webrtc.TrackLocalStaticSample
	vFrames      [][]byte
	aPackets     [][]byte
	pubs         []client.Published
	sentV, sentA atomic.Int64
	started      time.Time
	plis         atomic.Int32
	// lateV, lateA: the most a write came after its schedule (ns). pion's
	// sender reports pair the last written RTP time with the wall clock of
	// its write, so a late write on a busy machine skews them by as much.
	lateV, lateA atomic.Int64
}

func storeMax(a *atomic.Int64, v time.Duration) {
	for {
		old := a.Load()
		if int64(v) <= old || a.CompareAndSwap(old, int64(v)) {
			return
		}
	}
}

func publishFiles(t testing.TB, c *client.Client, name string) *filePublisher {
	t.Helper()
	video, err := webrtc.NewTrackLocalStaticSample(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}, name+"-cam", name)
	if err != nil {
		t.Fatal(err)
	}
	audio, err := webrtc.NewTrackLocalStaticSample(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2}, name+"-mic", name)
	if err != nil {
		t.Fatal(err)
	}
	p := &filePublisher{name: name, video: video, audio: audio,
		vFrames: testutil.ReadIVF(t, filepath.Join("testdata", "video.ivf")), aPackets: testutil.ReadOgg(t, filepath.Join("testdata", "audio.ogg"))}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	p.pubs, err = c.Publish(ctx,
		client.LocalTrack{Track: video, Source: protocol.SourceCamera, Name: "camera", OnKeyframeRequest: func() { p.plis.Add(1) }},
		client.LocalTrack{Track: audio, Source: protocol.SourceMicrophone, Name: "mic"})
	if err != nil {
		t.Fatalf("publish: %v", err)
	}
	return p
}

// prime sends padding-only packets until ready() holds: the tracks become
// published on the server (it needs a first packet) without any media,
// so a recorder attached now sees the clip from its first frame.
func (p *filePublisher) prime(t testing.TB, ready func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !ready() {
		if time.Now().After(deadline) {
			t.Fatal("tracks never became published / recorded")
		}
		_ = p.video.GeneratePadding(1)
		_ = p.audio.GeneratePadding(1)
		time.Sleep(30 * time.Millisecond)
	}
}

// send plays both files once, in real time, and returns when done.
func (p *filePublisher) send() {
	p.started = time.Now()
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		for i, f := range p.vFrames {
			at := p.started.Add(time.Duration(i) * time.Second / 30)
			sleepUntil(at)
			storeMax(&p.lateV, time.Since(at))
			if p.video.WriteSample(media.Sample{Data: f, Duration: time.Second / 30}) == nil {
				p.sentV.Add(1)
			}
		}
	}()
	go func() {
		defer wg.Done()
		for i, a := range p.aPackets {
			at := p.started.Add(time.Duration(i) * 20 * time.Millisecond)
			sleepUntil(at)
			storeMax(&p.lateA, time.Since(at))
			if p.audio.WriteSample(media.Sample{Data: a, Duration: 20 * time.Millisecond}) == nil {
				p.sentA.Add(1)
			}
		}
	}()
	wg.Wait()
}

func sleepUntil(t time.Time) {
	if d := time.Until(t); d > 0 {
		time.Sleep(d)
	}
}

func atof(s string) float64 { f, _ := strconv.ParseFloat(s, 64); return f }
func atoi(s string) int     { n, _ := strconv.Atoi(s); return n }

// recordSession runs two publishers in a room under a room recording and
// returns the final manifest and its folder.
//
// The second publisher starts its clip lateBy after the first.
func recordSession(t *testing.T, roomName string, loss float64, lateBy time.Duration) (*recorder.Manifest, string, []*filePublisher) {
	m, dir, pubs, final := recordSessionOpts(t, sessionOpts{room: roomName, loss: loss, lateBy: lateBy})
	if final.Status != "finished" {
		t.Fatalf("recording status %s: %s", final.Status, final.Error)
	}
	return m, dir, pubs
}

type sessionOpts struct {
	room    string
	loss    float64
	lateBy  time.Duration
	dir     string // recordings folder; "" = a temp dir
	onEvent func(recorder.Event)
}

func recordSessionOpts(t *testing.T, o sessionOpts) (*recorder.Manifest, string, []*filePublisher, recorder.Info) {
	roomName, loss, lateBy := o.room, o.loss, o.lateBy
	srv := startServer(t)
	dir := o.dir
	if dir == "" {
		dir = t.TempDir()
	}
	rec, err := recorder.NewManager(srv.Rooms(), recorder.Config{Dir: dir, Logger: testLogger(), OnEvent: o.onEvent})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rec.Close(context.Background()) })

	var drops []*dropper
	var pubs []*filePublisher
	for i, name := range []string{"alice", "bob"} {
		var api *webrtc.API
		if loss > 0 {
			d := &dropper{rate: loss, rng: rand.New(rand.NewSource(int64(i + 1)))}
			drops = append(drops, d)
			api = loopbackAPI(t, d)
		}
		c := join(t, srv, roomName, name, api)
		pubs = append(pubs, publishFiles(t, c, name))
	}
	var info recorder.Info
	started := false
	ready := func() bool {
		if !started {
			if srv.Rooms().Room(roomName) == nil {
				return false
			}
			info, err = rec.StartRoom(roomName)
			if err != nil {
				t.Fatalf("start recording: %v", err)
			}
			started = true
		}
		in, _ := rec.Get(info.ID)
		return in.Tracks == 4
	}
	// both publishers prime together until all four tracks are recorded
	deadline := time.Now().Add(10 * time.Second)
	for !ready() {
		if time.Now().After(deadline) {
			t.Fatal("recording never attached to the four tracks")
		}
		for _, p := range pubs {
			_ = p.video.GeneratePadding(1)
			_ = p.audio.GeneratePadding(1)
		}
		time.Sleep(30 * time.Millisecond)
	}
	var wg sync.WaitGroup
	for i, p := range pubs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if i > 0 && lateBy > 0 {
				// keep the late track published (padding carries no media)
				stop := time.Now().Add(lateBy)
				for time.Now().Before(stop) {
					_ = p.video.GeneratePadding(1)
					_ = p.audio.GeneratePadding(1)
					time.Sleep(30 * time.Millisecond)
				}
			}
			p.send()
		}()
	}
	wg.Wait()
	time.Sleep(500 * time.Millisecond) // let the last packets (and retransmissions) arrive
	final, err := rec.Stop(info.ID)
	if err != nil {
		t.Fatal(err)
	}
	m, err := recorder.ReadManifest(final.Manifest)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range drops {
		t.Logf("uplink loss: dropped %d of %d packets", d.dropped.Load(), d.sent.Load())
	}
	return m, filepath.Dir(final.Manifest), pubs, final
}

// Two participants publish real VP8 and Opus; every file must probe with
// the right codec, the sent frame count and the session's duration.
func TestRecordTwoParticipants(t *testing.T) {
	t.Parallel()
	testutil.RequireTool(t, "ffprobe")
	testutil.RequireTool(t, "ffmpeg")
	m, dir, pubs := recordSession(t, "rec-two", 0, 0)
	if len(m.Participants) != 2 || len(m.Tracks) != 4 {
		t.Fatalf("manifest: %d participants, %d tracks", len(m.Participants), len(m.Tracks))
	}
	sent := map[string]*filePublisher{}
	for _, p := range pubs {
		sent[p.name] = p
	}
	for _, tr := range m.Tracks {
		if tr.File == "" || tr.Error != "" {
			t.Fatalf("track %s: file %q error %q", tr.ID, tr.File, tr.Error)
		}
		path := filepath.Join(dir, tr.File)
		pr := testutil.FFprobe(t, path)
		if len(pr.Streams) != 1 {
			t.Fatalf("%s: %d streams", tr.File, len(pr.Streams))
		}
		st := pr.Streams[0]
		p := sent[tr.ParticipantName]
		var wantCodec string
		var wantFrames int64
		var wantDur float64
		switch tr.Kind {
		case "video":
			wantCodec, wantFrames = "vp8", p.sentV.Load()
			wantDur = float64(wantFrames) / 30
			if st.Width != 320 || st.Height != 180 {
				t.Errorf("%s: %dx%d, want 320x180", tr.File, st.Width, st.Height)
			}
		case "audio":
			wantCodec, wantFrames = "opus", p.sentA.Load()
			wantDur = float64(wantFrames) * 0.02
		}
		if st.CodecName != wantCodec {
			t.Errorf("%s: codec %s, want %s", tr.File, st.CodecName, wantCodec)
		}
		if got := atoi(st.NbReadFrames); int64(got) != wantFrames {
			t.Errorf("%s: %d frames decoded, %d sent", tr.File, got, wantFrames)
		}
		d := atof(pr.Format.Duration)
		if math.Abs(d-wantDur) > 0.2 {
			t.Errorf("%s: duration %.3f s, session sent %.3f s", tr.File, d, wantDur)
		}
		if e := testutil.DecodeErrors(t, path); e != "" {
			t.Errorf("%s: decode errors: %s", tr.File, e)
		}
		if tr.ClockSource != "rtcp-sr" {
			t.Errorf("%s: start offset from %q, want rtcp-sr", tr.File, tr.ClockSource)
		}
		t.Logf("%s %s %s: %s frames, ffprobe %s s (sent %.3f s), start %d ms (%s)",
			tr.ParticipantName, tr.Kind, st.CodecName, st.NbReadFrames, pr.Format.Duration, wantDur, tr.StartMS, tr.ClockSource)
	}
	// audio and video of one publisher start together (same clip start)
	starts := map[string][]int64{}
	for _, tr := range m.Tracks {
		starts[tr.ParticipantName] = append(starts[tr.ParticipantName], tr.StartMS)
	}
	for who, s := range starts {
		// 40 ms, plus the publisher's own clock error from late writes
		// (a busy machine): its sender reports are off by that much.
		p := sent[who]
		late := time.Duration(p.lateV.Load() + p.lateA.Load())
		if len(s) == 2 && math.Abs(float64(s[0]-s[1])) > 40+float64(late.Milliseconds()) {
			t.Errorf("%s: audio and video start %v ms apart on the room clock (publisher's writes up to %s late)", who, s, late)
		}
	}
}

// With 3% of the publishers' packets lost upstream, files still decode
// without a single error.
func TestRecordWithLoss(t *testing.T) {
	t.Parallel()
	testutil.RequireTool(t, "ffprobe")
	testutil.RequireTool(t, "ffmpeg")
	m, dir, _ := recordSession(t, "rec-loss", 0.03, 0)
	for _, tr := range m.Tracks {
		if tr.File == "" {
			t.Fatalf("track %s has no file (%s)", tr.ID, tr.Error)
		}
		path := filepath.Join(dir, tr.File)
		if e := testutil.DecodeErrors(t, path); e != "" {
			t.Errorf("%s: decode errors with 3%% loss: %s", tr.File, e)
		}
		pr := testutil.FFprobe(t, path)
		t.Logf("%s %s: %s frames, %s s, %d frames dropped by the recorder", tr.ParticipantName, tr.Kind,
			pr.Streams[0].NbReadFrames, pr.Format.Duration, tr.DroppedFrames)
	}
}
