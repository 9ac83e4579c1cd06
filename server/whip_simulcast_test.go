package server_test

import (
	"encoding/json"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"
	"github.com/starling-rtc/starling/protocol"
	"github.com/starling-rtc/starling/server"
)

// A WHIP client that sends simulcast (three rids, as OBS and browsers can):
// the room sees one track with low, medium and high layers, and a
// subscriber's quality choice picks among them.
func TestWHIPSimulcast(t *testing.T) {
	parallel(t)
	srv := startServer(t, nil)
	watcher := join(t, srv, "simwhip", "watcher")
	v := watchVideo(watcher)
	whipSimulcast(t, srv, "/v1/rooms/simwhip/whip?name=sim")

	ev, err := watcher.WaitEvent(ctxT(t, 10*time.Second), protocol.NotifyTrackPublished, nil)
	if err != nil {
		t.Fatal(err)
	}
	var tp protocol.TrackParams
	_ = json.Unmarshal(ev.Params, &tp)
	if !tp.Track.Simulcast || len(tp.Track.Layers) != 3 || tp.Track.Layers[0].RID != "q" || tp.Track.Layers[2].RID != "f" {
		t.Fatalf("WHIP simulcast track as the room sees it: %+v", tp.Track)
	}
	v.waitHeight(t, 15*time.Second, 720)
	setSub(t, watcher, protocol.SetSubscriptionParams{TrackID: tp.Track.ID, Quality: ptr(protocol.QualityLow)})
	v.waitHeight(t, 15*time.Second, 180)
	setSub(t, watcher, protocol.SetSubscriptionParams{TrackID: tp.Track.ID, Quality: ptr(protocol.QualityMedium)})
	v.waitHeight(t, 15*time.Second, 360)
}

// whipSimulcast publishes simLayers over WHIP (path) as a browser or OBS
// would: three rids, no sizes (WHIP has no way to give them), keyframes
// carrying their size, every second and on request.
func whipSimulcast(t *testing.T, srv *server.Server, path string) {
	t.Helper()
	pc, err := plainAPI(t, nil).NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pc.Close() })
	tracks := map[string]*webrtc.TrackLocalStaticRTP{}
	var tr *webrtc.RTPTransceiver
	for _, l := range simLayers {
		track, err := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}, "cam", "obs", webrtc.WithRTPStreamID(l.rid))
		if err != nil {
			t.Fatal(err)
		}
		tracks[l.rid] = track
		if tr == nil {
			if tr, err = pc.AddTransceiverFromTrack(track, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly}); err != nil {
				t.Fatal(err)
			}
		} else if err := tr.Sender().AddEncoding(track); err != nil {
			t.Fatal(err)
		}
	}
	postOffer(t, srv, path, "", pc)
	var midID, ridID uint8
	for _, e := range tr.Sender().GetParameters().HeaderExtensions {
		switch e.URI {
		case sdp.SDESMidURI:
			midID = uint8(e.ID)
		case sdp.SDESRTPStreamIDURI:
			ridID = uint8(e.ID)
		}
	}
	if midID == 0 || ridID == 0 {
		t.Fatal("mid/rid header extensions not negotiated")
	}
	var wantKey atomic.Bool
	go func() { // keyframe requests from the server
		for {
			pkts, _, err := tr.Sender().ReadRTCP()
			if err != nil {
				return
			}
			for _, p := range pkts {
				if _, ok := p.(*rtcp.PictureLossIndication); ok {
					wantKey.Store(true)
				}
			}
		}
	}()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // pion leaves mid and rid off its packets: stamp them as browsers do
		defer wg.Done()
		tick := time.NewTicker(33 * time.Millisecond)
		defer tick.Stop()
		seq := [3]uint16{10, 20000, 40000}
		ts := [3]uint32{1, 1 << 20, 1 << 30}
		var pid [3]uint16
		for frame := 0; ; frame++ {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			key := wantKey.Swap(false) || frame%30 == 0
			for i, l := range simLayers {
				for part := 0; part < 2; part++ {
					pkt := &rtp.Packet{Header: rtp.Header{Version: 2, Marker: part == 1, SequenceNumber: seq[i], Timestamp: ts[i]},
						Payload: simPayload(pid[i], part == 0, key, l.w, l.h, false)}
					if frame < 50 {
						_ = pkt.Header.SetExtension(midID, []byte(tr.Mid()))
						_ = pkt.Header.SetExtension(ridID, []byte(l.rid))
					}
					_ = tracks[l.rid].WriteRTP(pkt)
					seq[i]++
				}
				pid[i] = (pid[i] + 1) & 0x7fff
				ts[i] += 3000
			}
		}
	}()
	t.Cleanup(func() { close(stop); wg.Wait() })
}

// TestOutsiderSimulcastCapWithoutSizes: docs/PROTOCOL.md says a subscriber
// gets the highest layer that fits its maxWidth/maxHeight, and that an
// offer's `layers` (the encodings' sizes) is optional; WHIP cannot give
// them at all. A viewer of such a simulcast publisher capped at 640x360
// went on getting 1280x720: with no sizes known every layer "fitted". The
// server now reads each layer's size from its keyframes, and tells the
// room (trackUpdated with the sizes).
func TestOutsiderSimulcastCapWithoutSizes(t *testing.T) {
	parallel(t)
	srv := startServer(t, nil)
	watcher := join(t, srv, "simsizes", "watcher")
	v := watchVideo(watcher)
	whipSimulcast(t, srv, "/v1/rooms/simsizes/whip?name=sim")
	ev, err := watcher.WaitEvent(ctxT(t, 10*time.Second), protocol.NotifyTrackPublished, nil)
	if err != nil {
		t.Fatal(err)
	}
	var tp protocol.TrackParams
	_ = json.Unmarshal(ev.Params, &tp)
	setSub(t, watcher, protocol.SetSubscriptionParams{TrackID: tp.Track.ID, MaxWidth: ptr(640), MaxHeight: ptr(400)})
	v.waitHeight(t, 15*time.Second, 360)
	setSub(t, watcher, protocol.SetSubscriptionParams{TrackID: tp.Track.ID, MaxWidth: ptr(0), MaxHeight: ptr(200)})
	v.waitHeight(t, 15*time.Second, 180)
	sized := func(raw json.RawMessage) bool {
		var p protocol.TrackParams
		_ = json.Unmarshal(raw, &p)
		if len(p.Track.Layers) != 3 {
			return false
		}
		for i, l := range simLayers {
			if got := p.Track.Layers[i]; got.Width != l.w || got.Height != l.h {
				return false
			}
		}
		return true
	}
	if _, err := watcher.WaitEvent(ctxT(t, 10*time.Second), protocol.NotifyTrackUpdated, sized); err != nil {
		t.Fatalf("no trackUpdated with the layers' sizes: %v", err)
	}
}

// A WHEP viewer is a subscriber like any other for bandwidth: on a narrow
// downlink it is moved to a lower simulcast layer, without renegotiating.
func TestWHEPLayerFitsBandwidth(t *testing.T) {
	timingTest(t, groupCongestion)
	srv := startServer(t, withBWE)
	pub := join(t, srv, "whepbwe", "camera")
	publishSimulcast(t, pub, 1, 2, 6) // ~0.25, 0.5, 1.6 Mbit/s

	th := &throttle{}
	pc := receivingPC(t, plainAPI(t, nil, th), webrtc.Configuration{})
	v := &videoWatcher{lastPID: -1, codec: vp8Sim}
	pc.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		for {
			pkt, _, err := tr.ReadRTP()
			if err != nil {
				return
			}
			if tr.Kind() == webrtc.RTPCodecTypeVideo && len(pkt.Payload) > 0 {
				v.add(pkt)
			}
		}
	})
	postOffer(t, srv, "/v1/rooms/whepbwe/whep", "", pc)
	v.waitHeight(t, 15*time.Second, 720)
	th.limit.Store(700_000)
	start := time.Now()
	waitFor(t, 20*time.Second, "the throttled WHEP viewer on a lower layer", func() bool {
		s, _ := v.snapshot()
		return len(s) > 0 && s[len(s)-1] < 720
	})
	s, n := v.snapshot()
	t.Logf("WHEP viewer down to %dp %v after the downlink narrowed to 700 kbit/s (%d packets, %d seq breaks)",
		s[len(s)-1], time.Since(start).Round(time.Millisecond), n, v.seqBreaks)
}
