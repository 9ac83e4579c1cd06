package server_test

import (
	"encoding/json"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
	"github.com/starling-rtc/starling/client"
	"github.com/starling-rtc/starling/protocol"
	"github.com/starling-rtc/starling/sfu"
)

var simLayers = []struct {
	rid  string
	w, h int
}{{"q", 320, 180}, {"h", 640, 360}, {"f", 1280, 720}}

// fakeSimulcast sends three layers (VP8 unless said otherwise) at 30 fps
// with keyframes every second and on request; each layer has its own seq,
// ts and picture id bases.
type fakeSimulcast struct {
	codec     simCodec
	sim       *client.SimulcastTrack
	published client.Published
	stopped   [3]atomic.Bool // simulate the publisher dropping a layer
	sizes     [3]int         // packets per frame per layer; fixed before sending starts
	wantKey   atomic.Bool
	// onRequest: keyframes only when asked, on the layer asked for
	// (OnLayerKeyframeRequest), none periodic; fixed before sending starts.
	onRequest bool
	layerKey  [3]atomic.Bool
	stop      chan struct{}
	wg        sync.WaitGroup
}

// publishSimulcast starts the fake; sizes, if given, are packets of ~1100
// bytes per frame for each layer (default: two small packets).
func publishSimulcast(t *testing.T, c *client.Client, sizes ...int) *fakeSimulcast {
	t.Helper()
	return publishSimulcastCodec(t, c, vp8Sim, sizes...)
}

// publishSimulcastCodec is publishSimulcast in another codec.
func publishSimulcastCodec(t *testing.T, c *client.Client, codec simCodec, sizes ...int) *fakeSimulcast {
	t.Helper()
	return startSimulcast(t, c, codec, false, sizes...)
}

// startSimulcast is publishSimulcastCodec; with onRequest the fake sends
// keyframes only on request, per layer.
func startSimulcast(t *testing.T, c *client.Client, codec simCodec, onRequest bool, sizes ...int) *fakeSimulcast {
	t.Helper()
	rids := []string{"q", "h", "f"}
	sim, err := client.NewSimulcastTrack(webrtc.RTPCodecCapability{MimeType: codec.mime, ClockRate: 90000}, "cam", "stream", rids...)
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeSimulcast{codec: codec, sim: sim, stop: make(chan struct{}), onRequest: onRequest}
	copy(f.sizes[:], sizes)
	hints := make([]protocol.LayerHint, 0, 3)
	for _, l := range simLayers {
		hints = append(hints, protocol.LayerHint{RID: l.rid, Width: l.w, Height: l.h})
	}
	lt := client.LocalTrack{
		Simulcast: sim, Source: protocol.SourceCamera, Layers: hints,
		OnKeyframeRequest: func() { f.wantKey.Store(true) },
	}
	if onRequest {
		lt.OnLayerKeyframeRequest = func(rid string) {
			for i, l := range simLayers {
				if l.rid == rid {
					f.layerKey[i].Store(true)
				}
			}
		}
	}
	pubs, err := c.Publish(ctxT(t, 10*time.Second), lt)
	if err != nil || len(pubs) != 1 {
		t.Fatalf("publish simulcast: %v (%d tracks)", err, len(pubs))
	}
	f.published = pubs[0]
	if !f.published.Simulcast || len(f.published.Layers) != 3 || f.published.Layers[0].RID != "q" || f.published.Layers[2].Quality != protocol.QualityHigh {
		t.Fatalf("server's view of the simulcast track is wrong: %+v", f.published.Track)
	}
	f.wg.Add(1)
	go f.run()
	t.Cleanup(func() { close(f.stop); f.wg.Wait() })
	return f
}

func (f *fakeSimulcast) run() {
	defer f.wg.Done()
	tick := time.NewTicker(33 * time.Millisecond)
	defer tick.Stop()
	type state struct {
		seq uint16
		ts  uint32
		pid uint16
	}
	st := [3]state{{100, 1000, 10}, {40000, 555555, 20000}, {65500, 4294960000, 32760}}
	for frame := 0; ; frame++ {
		select {
		case <-f.stop:
			return
		case <-tick.C:
		}
		key := f.wantKey.Swap(false) || frame%30 == 0
		for i, l := range simLayers {
			s := &st[i]
			if f.stopped[i].Load() || !f.sim.Active(l.rid) {
				s.ts += 3000
				continue
			}
			if f.onRequest {
				key = f.layerKey[i].Swap(false)
			}
			parts := 2
			if n := f.sizes[i]; n > 0 {
				parts = n
			}
			for part := 0; part < parts; part++ {
				payload := f.codec.payload(s.pid, part, key, l.w, l.h, f.sizes[i] > 0)
				pkt := &rtp.Packet{Header: rtp.Header{Version: 2, Marker: part == parts-1, SequenceNumber: s.seq, Timestamp: s.ts}, Payload: payload}
				_ = f.sim.WriteRTP(l.rid, pkt)
				s.seq++
			}
			s.pid = (s.pid + 1) & 0x7fff
			s.ts += 3000
		}
	}
}

// simCodec writes one codec's synthetic frames, whose keyframes carry their
// dimensions, and reads the height back from a received keyframe packet.
type simCodec struct {
	mime    string
	payload func(pid uint16, part int, key bool, w, h int, big bool) []byte
	height  func(p []byte) (h int, ok bool)
	pid     func(p []byte) (pid int, ok bool) // picture id of a frame's first packet; nil = not checked
}

var vp8Sim = simCodec{
	mime: webrtc.MimeTypeVP8,
	payload: func(pid uint16, part int, key bool, w, h int, big bool) []byte {
		return simPayload(pid, part == 0, key, w, h, big)
	},
	height: func(p []byte) (int, bool) {
		_, h, ok := sfu.VP8FrameSize(p)
		return h, ok
	},
	pid: func(p []byte) (int, bool) {
		if len(p) < 4 || p[0]&0x10 == 0 {
			return 0, false
		}
		return int(p[2]&0x7f)<<8 | int(p[3]), true
	},
}

func simPayload(pid uint16, first, key bool, w, h int, big bool) []byte {
	b := []byte{0x80, 0x80, 0x80 | byte(pid>>8), byte(pid)}
	if first {
		b[0] |= 0x10
		if key {
			b = append(b, 0x10, 0x02, 0x00, 0x9d, 0x01, 0x2a, byte(w), byte(w>>8), byte(h), byte(h>>8))
		} else {
			b = append(b, 0x11, 0x02, 0x00)
		}
	}
	if big {
		return append(b, make([]byte, 1100)...)
	}
	return append(b, make([]byte, 300)...)
}

// videoWatcher records what a subscriber's decoder would see: keyframe
// sizes, and continuity of seq, ts and picture id across the whole stream.
type videoWatcher struct {
	codec     simCodec
	c         *client.Client
	mu        sync.Mutex
	sizes     []int // heights of keyframes received, in order
	packets   int
	lastSeq   uint16
	lastTS    uint32
	lastPID   int
	seqBreaks int
	tsBack    int
	pidBreaks int
}

func watchVideo(c *client.Client) *videoWatcher {
	return watchVideoCodec(c, vp8Sim)
}

func watchVideoCodec(c *client.Client, codec simCodec) *videoWatcher {
	v := &videoWatcher{lastPID: -1, c: c, codec: codec}
	c.OnTrack(func(rt *client.RemoteTrack) {
		if rt.Track.Kind() != webrtc.RTPCodecTypeVideo {
			return
		}
		go func() {
			for {
				pkt, _, err := rt.Track.ReadRTP()
				if err != nil {
					return
				}
				v.add(pkt)
			}
		}()
	})
	return v
}

func (v *videoWatcher) add(pkt *rtp.Packet) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.packets > 0 {
		if pkt.SequenceNumber != v.lastSeq+1 {
			v.seqBreaks++
		}
		if int32(pkt.Timestamp-v.lastTS) < 0 {
			v.tsBack++
		}
	}
	v.packets++
	v.lastSeq, v.lastTS = pkt.SequenceNumber, pkt.Timestamp
	p := pkt.Payload
	if v.codec.pid != nil {
		if pid, ok := v.codec.pid(p); ok {
			if v.lastPID >= 0 && pid != (v.lastPID+1)&0x7fff {
				v.pidBreaks++
			}
			v.lastPID = pid
		}
	}
	if h, ok := v.codec.height(p); ok {
		v.sizes = append(v.sizes, h)
	}
}

func (v *videoWatcher) snapshot() (sizes []int, packets int) {
	v.mu.Lock()
	defer v.mu.Unlock()
	return append([]int(nil), v.sizes...), v.packets
}

// waitHeight waits until the last received keyframe has height h.
func (v *videoWatcher) waitHeight(t *testing.T, d time.Duration, h int) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		s, n := v.snapshot()
		if len(s) > 0 && s[len(s)-1] == h {
			return time.Since(start)
		}
		if time.Since(start) > d {
			last := s[max(0, len(s)-5):]
			t.Fatalf("timed out after %v waiting for keyframes of height %d: last keyframe heights %v, %d packets; subscriber was last told %s",
				d, h, last, n, v.lastUpdate())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// lastUpdate is the last subscriptionUpdated the watched client got.
func (v *videoWatcher) lastUpdate() string {
	if v.c == nil {
		return "nothing"
	}
	evs := v.c.Events()
	for i := len(evs) - 1; i >= 0; i-- {
		if evs[i].Method == protocol.NotifySubscriptionUpdated {
			return string(evs[i].Params)
		}
	}
	return "nothing"
}

func setSub(t *testing.T, c *client.Client, p protocol.SetSubscriptionParams) {
	t.Helper()
	if err := c.Call(ctxT(t, 5*time.Second), protocol.MethodSetSubscription, p, nil); err != nil {
		t.Fatalf("setSubscription: %v", err)
	}
}

// capAndRaise caps the subscriber at 360p (then runs capped, if not nil),
// checks that only 360p keyframes arrive, and raises the cap to 720p. The
// switch latency is logged, not asserted tightly (that is a benchmark's
// job): about two keyframe intervals is expected, the bound only catches a
// switch that never happens.
func capAndRaise(t *testing.T, sub *client.Client, v *videoWatcher, id string, capped func()) {
	t.Helper()
	setSub(t, sub, protocol.SetSubscriptionParams{TrackID: id, MaxHeight: intp(360)})
	v.waitHeight(t, 10*time.Second, 360)
	first, _ := v.snapshot()
	from := len(first) - 1 // the first 360p keyframe
	if capped != nil {
		capped()
	}
	// Two more keyframes while capped (the publisher sends them
	// periodically; a fixed 1.5 s got only one on a busy machine), all 360p.
	waitFor(t, 15*time.Second, "two more keyframes while capped", func() bool {
		s, _ := v.snapshot()
		return len(s) >= from+3
	})
	sizes, _ := v.snapshot()
	for _, h := range sizes[from:] {
		if h != 360 {
			t.Fatalf("capped at 360 but received a %dp keyframe: %v", h, sizes)
		}
	}
	setSub(t, sub, protocol.SetSubscriptionParams{TrackID: id, MaxHeight: intp(720)})
	up := v.waitHeight(t, 10*time.Second, 720)
	t.Logf("%s: switch latency 360p -> 720p: %v", v.codec.mime, up)
}

func intp(v int) *int    { return &v }
func boolp(v bool) *bool { return &v }

// TestSimulcastLayerSelection: caps pick the layer, switches happen at
// keyframes, pause stops video, and the stream stays continuous throughout.
func TestSimulcastLayerSelection(t *testing.T) {
	parallelLong(t) // 5-6 s: started late, it ended the light phase alone
	srv := startServer(t, nil)
	sub := join(t, srv, "sim", "viewer")
	v := watchVideo(sub)
	pub := join(t, srv, "sim", "camera")
	f := publishSimulcast(t, pub)
	id := f.published.ID

	v.waitHeight(t, 10*time.Second, 720) // uncapped: the top layer
	switches := scrape(t, srv)["starling_layer_switches_total"]
	capAndRaise(t, sub, v, id, func() {
		if _, err := sub.WaitEvent(ctxT(t, 5*time.Second), protocol.NotifySubscriptionUpdated, func(raw json.RawMessage) bool {
			var u protocol.SubscriptionUpdatedParams
			return json.Unmarshal(raw, &u) == nil && u.Layer == protocol.QualityMedium && u.Reason == sfu.ReasonSubscriber
		}); err != nil {
			t.Fatal(err)
		}
	})
	// Both switches show in /metrics (a process total: other tests may add).
	if got := scrape(t, srv)["starling_layer_switches_total"]; got < switches+2 {
		t.Errorf("starling_layer_switches_total went from %v to %v over two switches", switches, got)
	}

	setSub(t, sub, protocol.SetSubscriptionParams{TrackID: id, Paused: boolp(true)})
	waitStill(t, "paused, but video packets still arrive", func() int { _, n := v.snapshot(); return n })
	setSub(t, sub, protocol.SetSubscriptionParams{TrackID: id, Paused: boolp(false), MaxHeight: intp(180)})
	v.waitHeight(t, 10*time.Second, 180)

	v.mu.Lock()
	defer v.mu.Unlock()
	if v.seqBreaks != 0 || v.tsBack != 0 || v.pidBreaks != 0 {
		t.Fatalf("stream not continuous across switches: %d seq breaks, %d timestamps backwards, %d picture id breaks (in %d packets)",
			v.seqBreaks, v.tsBack, v.pidBreaks, v.packets)
	}
}

// TestSimulcastPublisherDropsLayer: when the top layer stops, subscribers on
// it fall back to medium within about a second, and return when it resumes.
func TestSimulcastPublisherDropsLayer(t *testing.T) {
	parallel(t)
	srv := startServer(t, nil)
	sub := join(t, srv, "sim", "viewer")
	v := watchVideo(sub)
	pub := join(t, srv, "sim", "camera")
	f := publishSimulcast(t, pub)
	v.waitHeight(t, 10*time.Second, 720)

	f.stopped[2].Store(true)
	down := v.waitHeight(t, 10*time.Second, 360)
	t.Logf("fallback to medium after the top layer stopped: %v", down)
	if _, err := sub.WaitEvent(ctxT(t, 2*time.Second), protocol.NotifySubscriptionUpdated, func(raw json.RawMessage) bool {
		var u protocol.SubscriptionUpdatedParams
		return json.Unmarshal(raw, &u) == nil && u.Layer == protocol.QualityMedium && u.Reason == sfu.ReasonPublisher
	}); err != nil {
		t.Fatal(err)
	}
	// docs/PROTOCOL.md: a layer's `active` says the server has received
	// it; a layer that stopped stays active (subscriptionUpdated says what
	// each subscriber gets).
	res := httpDo(t, http.MethodGet, "http://"+srv.Addr()+"/v1/rooms/sim/participants/"+pub.ParticipantID(), "", "", "")
	var p struct{ Tracks []protocol.Track }
	if err := json.Unmarshal([]byte(res.body), &p); err != nil || len(p.Tracks) != 1 || len(p.Tracks[0].Layers) != 3 || !p.Tracks[0].Layers[2].Active {
		t.Errorf("the stopped top layer as the admin API shows it: %d %s", res.status, res.body)
	}
	f.stopped[2].Store(false)
	v.waitHeight(t, 10*time.Second, 720)
}

// TestDynacast: with every subscriber capped at low, the publisher is told
// to send only low, and its other encodings switch off.
func TestDynacast(t *testing.T) {
	parallel(t)
	srv := startServer(t, nil)
	subs := []*client.Client{join(t, srv, "dyn", "a"), join(t, srv, "dyn", "b")}
	pub := join(t, srv, "dyn", "camera")
	f := publishSimulcast(t, pub)
	id := f.published.ID
	for _, s := range subs {
		if _, err := s.WaitEvent(ctxT(t, 10*time.Second), protocol.NotifyTrackPublished, nil); err != nil {
			t.Fatal(err)
		}
		setSub(t, s, protocol.SetSubscriptionParams{TrackID: id, Quality: ptr(protocol.QualityLow)})
	}
	waitFor(t, 5*time.Second, "publisher told to send only low", func() bool {
		return f.sim.Active("q") && !f.sim.Active("h") && !f.sim.Active("f")
	})
	setSub(t, subs[0], protocol.SetSubscriptionParams{TrackID: id, Quality: ptr(protocol.QualityHigh)})
	waitFor(t, 5*time.Second, "high switched back on", func() bool { return f.sim.Active("f") })
}

func ptr[T any](v T) *T { return &v }

// TestSimulcastWrittenBeforeConnected: a simulcast publisher writes its
// first 101 packets of each encoding before its connection is up (pion
// drops them: no SRTP keys yet), as a camera does on a busy machine where
// the connection takes a second or more. The Go client stamps only an
// encoding's first 100 packets with mid and rid; when all of those were
// dropped, the server saw no rid, gave up on every encoding ("incoming
// SSRC failed Simulcast probing") and the track was never published
// (TestDynacast and TestSimulcastCodecs under load). Packets written
// before the connection is up do not count now.
func TestSimulcastWrittenBeforeConnected(t *testing.T) {
	parallel(t)
	srv := startServer(t, nil)
	sub := join(t, srv, "sim-early", "viewer")
	v := watchVideoCodec(sub, vp8Sim)
	pub := join(t, srv, "sim-early", "camera")
	sim, err := client.NewSimulcastTrack(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}, "cam", "stream", "q", "h", "f")
	if err != nil {
		t.Fatal(err)
	}
	hints := make([]protocol.LayerHint, 0, 3)
	for _, l := range simLayers {
		hints = append(hints, protocol.LayerHint{RID: l.rid, Width: l.w, Height: l.h})
	}
	f := &fakeSimulcast{codec: vp8Sim, sim: sim, stop: make(chan struct{})}
	pubs, err := pub.Publish(ctxT(t, 30*time.Second), client.LocalTrack{
		Simulcast: sim, Source: protocol.SourceCamera, Layers: hints,
		OnKeyframeRequest: func() { f.wantKey.Store(true) },
	})
	if err != nil || len(pubs) != 1 {
		t.Fatalf("publish simulcast: %v (%d tracks)", err, len(pubs))
	}
	f.published = pubs[0]
	// The answer is applied; ICE and DTLS take round trips more.
	for i, l := range simLayers {
		for n := 0; n <= 100; n++ {
			pkt := &rtp.Packet{Header: rtp.Header{Version: 2, Marker: true, SequenceNumber: uint16(n), Timestamp: uint32(n) * 3000},
				Payload: vp8Sim.payload(uint16(n), 0, n == 0, l.w, l.h, false)}
			if err := sim.WriteRTP(l.rid, pkt); err != nil {
				t.Fatalf("layer %d: %v", i, err)
			}
		}
	}
	if s := pub.Publisher().ConnectionState(); s == webrtc.PeerConnectionStateConnected {
		t.Logf("the connection was up before the first packets were all written: this run does not show the case")
	}
	f.wg.Add(1)
	go f.run()
	t.Cleanup(func() { close(f.stop); f.wg.Wait() })
	if _, err := sub.WaitEvent(ctxT(t, 30*time.Second), protocol.NotifyTrackPublished, nil); err != nil {
		t.Fatal(err)
	}
	v.waitHeight(t, 30*time.Second, 720)
}
