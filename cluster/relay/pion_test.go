package relay

import (
	"bytes"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
	"github.com/starling-rtc/starling/internal/testutil"
	"github.com/starling-rtc/starling/sfu"
)

func loopbackAPI(t *testing.T) *webrtc.API {
	t.Helper()
	return testutil.PlainAPI(t, nil, nil)
}

// connect negotiates offerer -> answerer (non-trickle).
func connect(t *testing.T, offerer, answerer *webrtc.PeerConnection) {
	t.Helper()
	offer, err := offerer.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	done := webrtc.GatheringCompletePromise(offerer)
	if err := offerer.SetLocalDescription(offer); err != nil {
		t.Fatal(err)
	}
	<-done
	if err := answerer.SetRemoteDescription(*offerer.LocalDescription()); err != nil {
		t.Fatal(err)
	}
	answer, err := answerer.CreateAnswer(nil)
	if err != nil {
		t.Fatal(err)
	}
	done = webrtc.GatheringCompletePromise(answerer)
	if err := answerer.SetLocalDescription(answer); err != nil {
		t.Fatal(err)
	}
	<-done
	if err := offerer.SetRemoteDescription(*answerer.LocalDescription()); err != nil {
		t.Fatal(err)
	}
}

// vp8Packet is a one-packet VP8 frame with a 15-bit picture id (4-byte
// descriptor), a keyframe or not, and a body that names it.
func vp8Packet(pictureID uint16, key bool, body []byte) []byte {
	p := []byte{0x90, 0x80, 0x80 | byte(pictureID>>8&0x7f), byte(pictureID)}
	if key {
		p = append(p, 0x10, 0x02, 0x00, 0x9d, 0x01, 0x2a, 0x80, 0x02, 0x68, 0x01)
	} else {
		p = append(p, 0x11, 0x02, 0x00)
	}
	return append(p, body...)
}

// TestRelayRealPeers: a pion publisher on the origin, a real sfu.Receiver,
// the relay, and on the edge a real sfu.DownTrack on the Import sending to
// a pion subscriber: the media arrives, the subscriber's PLI reaches the
// publisher across the relay, and the publisher's sender reports give the
// edge the publisher's clock.
func TestRelayRealPeers(t *testing.T) {
	t.Parallel() // see main_test.go
	api := loopbackAPI(t)
	origin, edge := pair(t)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))

	// Publisher -> origin.
	pub, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	originPC, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	defer originPC.Close()
	track, err := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}, "v", "pub")
	if err != nil {
		t.Fatal(err)
	}
	sender, err := pub.AddTrack(track)
	if err != nil {
		t.Fatal(err)
	}
	plis := make(chan struct{}, 100)
	go func() {
		for {
			pkts, _, err := sender.ReadRTCP()
			if err != nil {
				return
			}
			for _, p := range pkts {
				if _, ok := p.(*rtcp.PictureLossIndication); ok {
					plis <- struct{}{}
				}
			}
		}
	}()
	receivers := make(chan *sfu.Receiver, 1)
	originPC.OnTrack(func(tr *webrtc.TrackRemote, rr *webrtc.RTPReceiver) {
		r := sfu.NewReceiver("TR_real", tr.Codec(), tr.Kind(), originPC.WriteRTCP, log)
		r.AddLayer(0, tr, rr)
		receivers <- r
	})
	connect(t, pub, originPC)

	// Send frames until the origin has the track (OnTrack needs a packet).
	var seq uint16 = 1000
	var pid uint16 = 1
	var ts uint32 = 90000
	write := func(key bool, body []byte) {
		pkt := &rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: seq, Timestamp: ts, Marker: true},
			Payload: vp8Packet(pid, key, body)}
		seq++
		pid++
		ts += 3000
		if err := track.WriteRTP(pkt); err != nil {
			t.Fatal(err)
		}
	}
	var recv *sfu.Receiver
	for recv == nil {
		write(true, []byte("warm-up"))
		select {
		case recv = <-receivers:
		case <-time.After(50 * time.Millisecond):
		}
	}
	defer func() { recv.Close(); originPC.Close(); recv.Wait() }()

	exp, err := origin.Export("node-b", recv, 1)
	if err != nil {
		t.Fatal(err)
	}
	imp, err := edge.Import("node-a", exp.SSRCBase(), recv.ID(), recv.Kind(), recv.Codec(), 1)
	if err != nil {
		t.Fatal(err)
	}

	// Edge -> subscriber, through a real down track on the import.
	edgePC, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	defer edgePC.Close()
	sub, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	d := sfu.NewDownTrack(imp, "PA_pub")
	d.SetTarget(0)
	rs, err := edgePC.AddTrack(d)
	if err != nil {
		t.Fatal(err)
	}
	d.StartRTCP(rs)
	imp.AddSink(d)
	var mu sync.Mutex
	var bodies [][]byte
	subTrack := make(chan *webrtc.TrackRemote, 1)
	sub.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		subTrack <- tr
		for {
			p, _, err := tr.ReadRTP()
			if err != nil {
				return
			}
			mu.Lock()
			bodies = append(bodies, append([]byte(nil), p.Payload...))
			mu.Unlock()
		}
	})
	connect(t, edgePC, sub)

	// Frames flow until the subscriber has ten of the numbered ones: the
	// VP8 body after the rewritten descriptor is the publisher's, byte for
	// byte.
	want := map[string]bool{}
	deadline := time.Now().Add(20 * time.Second)
	for n := 0; ; n++ {
		body := []byte{'f', 'r', 'a', 'm', 'e', byte(n >> 8), byte(n)}
		want[string(body)] = true
		write(n%30 == 0, body)
		time.Sleep(10 * time.Millisecond)
		mu.Lock()
		got := 0
		for _, b := range bodies {
			if i := bytes.Index(b, []byte("frame")); i >= 0 && want[string(b[i:])] {
				got++
			}
		}
		mu.Unlock()
		if got >= 10 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the subscriber got %d relayed frames; origin %+v edge %+v", got, origin.Stats(), edge.Stats())
		}
	}

	// The subscriber asks for a keyframe: it reaches the publisher. (It
	// asks again each 400 ms: requests within 300 ms of the down track's
	// own first one are coalesced with it, as they should be.)
	tr := <-subTrack
	for len(plis) > 0 {
		<-plis
	}
	before := origin.Stats().PLIsIn
	got := false
	for tries := 0; !got && tries < 25; tries++ {
		if err := sub.WriteRTCP([]rtcp.Packet{&rtcp.PictureLossIndication{MediaSSRC: uint32(tr.SSRC())}}); err != nil {
			t.Fatal(err)
		}
		select {
		case <-plis:
			got = true
		case <-time.After(400 * time.Millisecond):
		}
	}
	if !got || origin.Stats().PLIsIn <= before {
		t.Fatalf("the subscriber's PLI did not reach the publisher across the relay: origin %+v edge %+v", origin.Stats(), edge.Stats())
	}

	// pion's publisher sends a sender report every second or so.
	eventually(t, "the publisher's clock on the edge (a relayed sender report)", func() bool {
		write(false, []byte("sr"))
		_, ok := imp.PublisherClockOffset()
		return ok
	})
}
