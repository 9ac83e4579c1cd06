package sfu

import (
	"testing"

	"github.com/pion/interceptor"
	"github.com/pion/interceptor/pkg/twcc"
	"github.com/pion/rtp"
	"github.com/pion/sdp/v3"
)

type countingRTPWriter struct{ n int }

func (w *countingRTPWriter) Write(*rtp.Header, []byte, interceptor.Attributes) (int, error) {
	w.n++
	return 0, nil
}

// TestAudioSkipsCongestionControl: with pion's TWCC header extension
// interceptor wrapped in videoOnly, video packets get a transport-wide
// sequence number and audio packets go out untouched.
func TestAudioSkipsCongestionControl(t *testing.T) {
	f, err := twcc.NewHeaderExtensionInterceptor()
	if err != nil {
		t.Fatal(err)
	}
	i, err := videoOnly{f}.NewInterceptor("pc")
	if err != nil {
		t.Fatal(err)
	}
	defer i.Close()
	ext := []interceptor.RTPHeaderExtension{{URI: sdp.TransportCCURI, ID: 5}}
	var seen []*rtp.Header
	inner := interceptor.RTPWriterFunc(func(h *rtp.Header, p []byte, a interceptor.Attributes) (int, error) {
		c := h.Clone()
		seen = append(seen, &c)
		return len(p), nil
	})
	video := i.BindLocalStream(&interceptor.StreamInfo{SSRC: 1, MimeType: "video/VP8", RTPHeaderExtensions: ext}, inner)
	audio := i.BindLocalStream(&interceptor.StreamInfo{SSRC: 2, MimeType: "audio/opus", RTPHeaderExtensions: ext}, inner)
	_, _ = video.Write(&rtp.Header{Version: 2, SSRC: 1}, []byte{1}, nil)
	_, _ = audio.Write(&rtp.Header{Version: 2, SSRC: 2}, []byte{1}, nil)
	if len(seen) != 2 {
		t.Fatalf("%d packets written, want 2", len(seen))
	}
	if seen[0].GetExtension(5) == nil {
		t.Fatal("the video packet has no transport-wide sequence number")
	}
	if seen[1].GetExtension(5) != nil {
		t.Fatal("the audio packet carries a transport-wide sequence number")
	}
	i.UnbindLocalStream(&interceptor.StreamInfo{SSRC: 2, MimeType: "audio/opus"})

	// The estimator never sees audio: its writer is the one given.
	w := &countingRTPWriter{}
	est := rtxEstimator{nil} // an audio stream must not reach the inner estimator
	if got := est.AddStream(&interceptor.StreamInfo{SSRC: 3, MimeType: "audio/opus"}, w); got != interceptor.RTPWriter(w) {
		t.Fatal("an audio stream was wrapped by the estimator")
	}
}
