package server_test

import (
	"context"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
	"github.com/starling-rtc/starling/client"
	"github.com/starling-rtc/starling/protocol"
)

// wireCounter counts the bytes of one TCP connection in both directions.
type wireCounter struct {
	net.Conn
	in, out *atomic.Int64
}

func (c wireCounter) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	c.in.Add(int64(n))
	return n, err
}

func (c wireCounter) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	c.out.Add(int64(n))
	return n, err
}

type wireCount struct{ in, out atomic.Int64 }

func countingWire(w *wireCount) func(*client.Options) {
	return func(o *client.Options) {
		o.NetDialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			return wireCounter{Conn: c, in: &w.in, out: &w.out}, nil
		}
	}
}

// TestSignalingCost: a 1:1 call, both participants publishing audio and
// video and receiving the other's, until media flows both ways. Reports the
// signaling messages and bytes on the wire (TCP payload: WebSocket framing,
// the HTTP upgrade included) per participant, with and without
// permessage-deflate. Issue 5 aims at 10 kB per participant; with deflate
// this call takes ~9.9 kB: two subscriber offers each, the data channel's
// and one for both tracks (a subscriber offer waits for the other tracks
// of the same publisher offer to start, Participant.siblingsStarting;
// without that, 10.6 kB and more on a loaded machine, where the two tracks'
// first packets can come more than the 40 ms offer delay apart). The bound
// of 11 kB (1.5 kB more per subscriber offer past two) catches a regression (14 kB before offers were narrowed to each
// track's codec, 36 kB without deflate).
func TestSignalingCost(t *testing.T) {
	parallel(t)
	sideBySide(t, []string{"deflate", "plain"}, func(t *testing.T, i int) {
		compressed := i == 0
		name := "deflate"
		if !compressed {
			name = "plain"
		}
		srv := startServer(t, nil)
		var wires [2]wireCount
		var clients [2]*client.Client
		var recs [2]*recorder
		for i := range clients {
			clients[i] = join(t, srv, "cost", []string{"alice", "bob"}[i], countingWire(&wires[i]),
				func(o *client.Options) { o.NoCompression = !compressed })
			recs[i] = record(clients[i])
		}
		var media [2]*fakeMedia
		for i, c := range clients {
			media[i] = publishFake(t, c)
		}
		waitFor(t, 15*time.Second, "video both ways", func() bool {
			return len(recs[0].payloads(media[1].track("video").ID)) > 20 &&
				len(recs[1].payloads(media[0].track("video").ID)) > 20
		})
		time.Sleep(500 * time.Millisecond) // late candidates and notifications
		for i, c := range clients {
			sent, recv := c.MessageCounts()
			bytes := wires[i].in.Load() + wires[i].out.Load()
			methods := map[string]int{}
			for _, e := range c.Events() {
				methods[e.Method]++
			}
			t.Logf("%s, participant %d: %d messages (%d sent, %d received: %v), %d bytes on the wire (%d up, %d down)",
				name, i, sent+recv, sent, recv, methods, bytes, wires[i].out.Load(), wires[i].in.Load())
			// A subscriber offer beyond the two a 1:1 call needs (its
			// tracks' first packets came further apart than the offer
			// wait on a machine at load 20-30: TestLateTracksShareOneOffer
			// covers the grouping) adds its offer, answer and candidates,
			// ~1.4 kB: the bound is per offer, so it still catches a
			// regression in what each message carries.
			limit := int64(11_000 + 1_500*max(0, methods["offer"]-2))
			if compressed && bytes > limit {
				t.Errorf("participant %d: %d signaling bytes for a 1:1 call with %d subscriber offers, want at most %d",
					i, bytes, methods["offer"], limit)
			}
		}
	})
}

// TestLateTracksShareOneOffer: a publisher's camera audio and video start
// 150 ms apart, but only well after the publisher's offer (here 600 ms
// after; on a busy machine the connection alone can take that long to come
// up). A subscriber still gets both in one offer: the wait for the other
// tracks of an offer counts from the first of them to start, not only
// from the offer (TestSignalingCost under load: 11.5 kB, two more
// messages each way).
func TestLateTracksShareOneOffer(t *testing.T) {
	// The tracks must start within the 500 ms the server waits for the
	// second: no light tests beside it.
	timingTest(t)
	srv := startServer(t, nil)
	const roomName = "late-start"
	viewer := join(t, srv, roomName, "viewer")
	rec := record(viewer)
	waitFor(t, 30*time.Second, "the viewer's subscriber connection", func() bool {
		return viewer.Subscriber().ConnectionState() == webrtc.PeerConnectionStateConnected
	})
	pub := join(t, srv, roomName, "pub")
	video, err := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}, "cam", "stream")
	if err != nil {
		t.Fatal(err)
	}
	audio, err := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2}, "mic", "stream")
	if err != nil {
		t.Fatal(err)
	}
	pubs, err := pub.Publish(ctxT(t, 30*time.Second),
		client.LocalTrack{Track: video, Source: protocol.SourceCamera},
		client.LocalTrack{Track: audio, Source: protocol.SourceMicrophone})
	if err != nil || len(pubs) != 2 {
		t.Fatalf("publish: %v", err)
	}
	published := time.Now()
	waitFor(t, 30*time.Second, "the publisher's connection", func() bool {
		return pub.Publisher().ConnectionState() == webrtc.PeerConnectionStateConnected
	})
	if d := 600*time.Millisecond - time.Since(published); d > 0 {
		time.Sleep(d) // past the 500 ms counted from the offer
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	defer func() { close(stop); wg.Wait() }()
	send := func(track *webrtc.TrackLocalStaticRTP, every time.Duration, payload func(n int) []byte, tsStep uint32) {
		defer wg.Done()
		tick := time.NewTicker(every)
		defer tick.Stop()
		for n := 0; ; n++ {
			pkt := &rtp.Packet{Header: rtp.Header{Version: 2, Marker: true, SequenceNumber: uint16(n), Timestamp: uint32(n) * tsStep}, Payload: payload(n)}
			if track.WriteRTP(pkt) != nil {
				return
			}
			select {
			case <-stop:
				return
			case <-tick.C:
			}
		}
	}
	wg.Add(1)
	go send(audio, 20*time.Millisecond, func(int) []byte { return []byte{0x78, 1, 2, 3} }, 960)
	time.Sleep(150 * time.Millisecond) // more than the 40 ms a subscriber offer waits for more changes
	wg.Add(1)
	go send(video, 33*time.Millisecond, func(n int) []byte { return vp8Payload(uint16(n), true, true, n, 0) }, 3000)
	audioID, videoID := pubs[0].ID, pubs[1].ID
	if pubs[0].Kind == "video" {
		audioID, videoID = videoID, audioID
	}
	waitFor(t, 30*time.Second, "both tracks at the viewer", func() bool {
		return len(rec.payloads(audioID)) > 0 && len(rec.payloads(videoID)) > 0
	})
	offers := 0
	for _, e := range viewer.Events() {
		if e.Method == protocol.MethodOffer {
			offers++
		}
	}
	// The first offer, at join, brought the data channel.
	if offers != 2 {
		t.Errorf("the viewer got %d subscriber offers, want 2: one at join, one for both tracks", offers)
	}
}
