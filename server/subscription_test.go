package server_test

import (
	"strings"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
	"github.com/starling-rtc/starling/client"
	"github.com/starling-rtc/starling/protocol"
)

// TestManualSubscription: with autoSubscribe false nothing arrives until
// `subscribe`; `unsubscribe` removes the transceiver by renegotiation.
func TestManualSubscription(t *testing.T) {
	parallel(t)
	srv := startServer(t, nil)
	no := false
	sub := join(t, srv, "manual", "viewer", func(o *client.Options) { o.AutoSubscribe = &no })
	rec := record(sub)
	pub := join(t, srv, "manual", "camera")
	media := publishFake(t, pub)
	video := media.track("video")
	if _, err := sub.WaitEvent(ctxT(t, 10*time.Second), protocol.NotifyTrackPublished, nil); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second)
	if n := len(rec.payloads(video.ID)); n != 0 {
		t.Fatalf("autoSubscribe false, yet %d video packets arrived before subscribe", n)
	}
	if err := sub.Call(ctxT(t, 5*time.Second), protocol.MethodSubscribe, protocol.TrackIDsParams{TrackIDs: []string{video.ID}}, nil); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "video after subscribe", func() bool { return len(rec.payloads(video.ID)) > 30 })
	if n := len(rec.payloads(media.track("audio").ID)); n != 0 {
		t.Fatalf("only video was subscribed, yet %d audio packets arrived", n)
	}
	if err := sub.Call(ctxT(t, 5*time.Second), protocol.MethodUnsubscribe, protocol.TrackIDsParams{TrackIDs: []string{video.ID}}, nil); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "renegotiation removing the unsubscribed track", func() bool {
		rd := sub.Subscriber().CurrentRemoteDescription()
		return rd != nil && !strings.Contains(rd.SDP, video.ID)
	})
	waitStill(t, "still receiving after unsubscribe", func() int { return len(rec.payloads(video.ID)) })
}

// TestCodecs: every codec browsers offer is forwarded, starting at a
// keyframe recognised for that codec, with the codec negotiated end to end.
func TestCodecs(t *testing.T) {
	parallel(t)
	codecs := []struct {
		name       string
		capability webrtc.RTPCodecCapability
		key, delta []byte // first packet of a keyframe, a delta frame
	}{
		{"H264", webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeH264, ClockRate: 90000,
			SDPFmtpLine: "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f"},
			[]byte{0x65, 0x88, 0x84, 0x00}, []byte{0x41, 0x9a, 0x02, 0x00}},
		{"VP9", webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP9, ClockRate: 90000, SDPFmtpLine: "profile-id=0"},
			[]byte{0x88, 0x00, 0x82, 0x49, 0x83, 0x42, 0x00}, []byte{0xc8, 0x01, 0x86, 0x00}},
		{"AV1", webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeAV1, ClockRate: 90000},
			[]byte{0x18, 0x0a, 0x0b, 0x00, 0x00}, []byte{0x10, 0x32, 0x00}},
	}
	names := make([]string, len(codecs))
	for i, c := range codecs {
		names[i] = c.name
	}
	sideBySide(t, names, func(t *testing.T, i int) {
		cc := codecs[i]
		srv := startServer(t, nil)
		sub := join(t, srv, "codec", "viewer")
		got := make(chan *client.RemoteTrack, 1)
		first := make(chan []byte, 1)
		sub.OnTrack(func(rt *client.RemoteTrack) {
			got <- rt
			for {
				pkt, _, err := rt.Track.ReadRTP()
				if err != nil {
					return
				}
				select {
				case first <- append([]byte(nil), pkt.Payload...):
				default:
				}
			}
		})
		pub := join(t, srv, "codec", "camera")
		track, err := webrtc.NewTrackLocalStaticRTP(cc.capability, "v", "s")
		if err != nil {
			t.Fatal(err)
		}
		var wantKey = make(chan struct{}, 1)
		pubs, err := pub.Publish(ctxT(t, 10*time.Second), client.LocalTrack{Track: track, Source: protocol.SourceCamera,
			OnKeyframeRequest: func() {
				select {
				case wantKey <- struct{}{}:
				default:
				}
			}})
		if err != nil || len(pubs) != 1 {
			t.Fatalf("publish %s: %v", cc.name, err)
		}
		if !strings.EqualFold(pubs[0].Codec, cc.capability.MimeType) {
			t.Fatalf("server says codec %q, want %q", pubs[0].Codec, cc.capability.MimeType)
		}
		stop := make(chan struct{})
		defer close(stop)
		go func() {
			seq, ts := uint16(1), uint32(0)
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				case <-time.After(33 * time.Millisecond):
				}
				payload := cc.delta
				select {
				case <-wantKey:
					payload = cc.key
				default:
				}
				_ = track.WriteRTP(&rtp.Packet{Header: rtp.Header{Version: 2, Marker: true, SequenceNumber: seq, Timestamp: ts}, Payload: payload})
				seq++
				ts += 3000
			}
		}()
		var rt *client.RemoteTrack
		select {
		case rt = <-got:
		case <-time.After(10 * time.Second):
			t.Fatalf("%s track never reached the subscriber", cc.name)
		}
		if !strings.EqualFold(rt.Track.Codec().MimeType, cc.capability.MimeType) {
			t.Fatalf("subscriber negotiated %s, want %s", rt.Track.Codec().MimeType, cc.capability.MimeType)
		}
		select {
		case p := <-first:
			if string(p) != string(cc.key) {
				t.Fatalf("first %s packet forwarded is not the keyframe: % x", cc.name, p)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("no %s media arrived", cc.name)
		}
	})
}
