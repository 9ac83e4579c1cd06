package sfu

import (
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"

	"github.com/pion/rtcp"
	"github.com/pion/webrtc/v4"
)

var h264Codec = webrtc.RTPCodecParameters{
	RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeH264, ClockRate: 90000,
		SDPFmtpLine: "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f"},
	PayloadType: 102,
}

// lateCodecPeers is a subscriber connection and a pion client answering
// it; vp8Only makes a client that decodes VP8 (and Opus) alone.
func lateCodecPeers(t *testing.T, vp8Only bool) (*Subscriber, *webrtc.PeerConnection) {
	t.Helper()
	e, err := NewEngine(EngineConfig{BindIP: "127.0.0.1", TCPPort: -1, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	s, err := NewSubscriber(e, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	m := &webrtc.MediaEngine{}
	if vp8Only {
		for _, c := range []struct {
			p webrtc.RTPCodecParameters
			k webrtc.RTPCodecType
		}{{vp8Codec, webrtc.RTPCodecTypeVideo}, {opusCodec, webrtc.RTPCodecTypeAudio}} {
			if err := m.RegisterCodec(c.p, c.k); err != nil {
				t.Fatal(err)
			}
		}
	} else if err := m.RegisterDefaultCodecs(); err != nil {
		t.Fatal(err)
	}
	client, err := webrtc.NewAPI(webrtc.WithMediaEngine(m)).NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = client.Close() })
	return s, client
}

func lateCodecTrack(t *testing.T, s *Subscriber, id string, codec webrtc.RTPCodecParameters) *DownTrack {
	t.Helper()
	src := NewReceiver(id, codec, webrtc.RTPCodecTypeVideo, func([]rtcp.Packet) error { return nil },
		slog.New(slog.NewTextHandler(io.Discard, nil)))
	d := NewDownTrack(src, "PA_"+id)
	t.Cleanup(d.Close)
	if err := s.AddDownTrack(d); err != nil {
		t.Fatal(err)
	}
	return d
}

// negotiate has s offer and client answer, failing the test on an error
// (what names the offer), and returns the offer.
func negotiate(t *testing.T, s *Subscriber, client *webrtc.PeerConnection, what string) string {
	t.Helper()
	sdp, err := s.CreateOffer()
	if err != nil {
		t.Fatalf("offer %s: %v", what, err)
	}
	if err := answerOffer(t, s, client, sdp); err != nil {
		t.Fatalf("answer to the offer %s: %v", what, err)
	}
	return sdp
}

// answerOffer has the client answer sdp and applies the answer.
func answerOffer(t *testing.T, s *Subscriber, client *webrtc.PeerConnection, sdp string) error {
	t.Helper()
	if err := client.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: sdp}); err != nil {
		t.Fatal(err)
	}
	ans, err := client.CreateAnswer(nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := client.SetLocalDescription(ans); err != nil {
		t.Fatal(err)
	}
	return s.SetAnswer(client.LocalDescription().SDP)
}

// A subscriber that negotiated VP8 first, then is offered an H.264 track
// (an H.264 camera, or OBS over WHIP, joins VP8 browsers): pion fixes a
// connection's video codecs from its first answer's first video section,
// so that section offers every codec and a client that decodes H.264 gets
// the H.264 track.
func TestLateCodecNegotiated(t *testing.T) {
	s, client := lateCodecPeers(t, false)
	vp8 := lateCodecTrack(t, s, "TR_vp8", vp8Codec)
	negotiate(t, s, client, "the first, VP8")
	h264 := lateCodecTrack(t, s, "TR_h264", h264Codec)
	sdp := negotiate(t, s, client, "with the H.264 track")
	if h264.Unsupported() || vp8.Unsupported() {
		t.Fatalf("unsupported: H.264 %v, VP8 %v; want both sent", h264.Unsupported(), vp8.Unsupported())
	}
	h264.mu.Lock()
	pt := h264.pt
	h264.mu.Unlock()
	if !strings.Contains(sdp, fmt.Sprintf("a=rtpmap:%d H264/90000", pt)) {
		t.Fatalf("the H.264 track is sent with payload type %d, not an H.264 one of the offer", pt)
	}
}

// The same with a client that decodes VP8 alone: the H.264 m-section can
// only be answered in VP8. The answer must still apply (it failed: the
// subscriber's offer stayed unanswered and the server ended it at the
// negotiation timeout, taking its other tracks along); the H.264
// subscription forwards nothing.
func TestLateCodecAnswerApplies(t *testing.T) {
	s, client := lateCodecPeers(t, true)
	vp8 := lateCodecTrack(t, s, "TR_vp8", vp8Codec)
	negotiate(t, s, client, "the first, VP8")
	h264 := lateCodecTrack(t, s, "TR_h264", h264Codec)
	negotiate(t, s, client, "with the H.264 track")
	if !h264.Unsupported() || vp8.Unsupported() {
		t.Fatalf("unsupported: H.264 %v (want true), VP8 %v (want false)", h264.Unsupported(), vp8.Unsupported())
	}
	// and the connection still negotiates: a third track
	lateCodecTrack(t, s, "TR_vp8b", vp8Codec)
	negotiate(t, s, client, "after")
}

// An H.264 track added while the subscriber's first offer (VP8 only) is in
// flight gets its codec preferences before video is negotiated; the answer
// then leaves pion no H.264 to offer. The next offer must still be made
// (pion refused it, "RTPSender created with no codecs", and so every later
// offer: the subscriber never got another change).
func TestLateCodecOfferInFlight(t *testing.T) {
	s, client := lateCodecPeers(t, true)
	lateCodecTrack(t, s, "TR_vp8", vp8Codec)
	first, err := s.CreateOffer()
	if err != nil {
		t.Fatal(err)
	}
	h264 := lateCodecTrack(t, s, "TR_h264", h264Codec)
	if err := answerOffer(t, s, client, first); err != nil {
		t.Fatalf("first answer: %v", err)
	}
	sdp, err := s.CreateOffer()
	if err != nil {
		t.Fatalf("offer after the first answer: %v", err)
	}
	if err := answerOffer(t, s, client, sdp); err != nil {
		t.Fatalf("answer: %v", err)
	}
	if !h264.Unsupported() {
		t.Fatal("the H.264 subscription was not marked unsupported")
	}
}
