package sfu

import (
	"encoding/binary"
	"testing"

	"github.com/pion/interceptor"
	"github.com/pion/rtp"
	"github.com/pion/sdp/v3"
)

type countingRTPWriter struct{ n int }

func (w *countingRTPWriter) Write(*rtp.Header, []byte, interceptor.Attributes) (int, error) {
	w.n++
	return 0, nil
}

// TestAudioSkipsCongestionControl: video packets get consecutive
// transport-wide sequence numbers across the connection's streams, audio
// packets go out untouched, and numbering does not allocate.
func TestAudioSkipsCongestionControl(t *testing.T) {
	i, err := twccSeqFactory{}.NewInterceptor("pc")
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
	video2 := i.BindLocalStream(&interceptor.StreamInfo{SSRC: 4, MimeType: "video/VP8", RTPHeaderExtensions: ext}, inner)
	_, _ = video2.Write(&rtp.Header{Version: 2, SSRC: 4}, []byte{1}, nil)
	if a, b := seen[0].GetExtension(5), seen[2].GetExtension(5); len(a) != 2 || len(b) != 2 ||
		binary.BigEndian.Uint16(b) != binary.BigEndian.Uint16(a)+1 {
		t.Fatalf("sequence numbers %x then %x: want consecutive across the connection's streams", a, b)
	}
	quiet := interceptor.RTPWriterFunc(func(*rtp.Header, []byte, interceptor.Attributes) (int, error) { return 0, nil })
	numbered := i.BindLocalStream(&interceptor.StreamInfo{SSRC: 5, MimeType: "video/VP8", RTPHeaderExtensions: ext}, quiet)
	h := &rtp.Header{Version: 2, SSRC: 5}
	payload := []byte{1}
	if n := testing.AllocsPerRun(100, func() {
		h.Extensions = h.Extensions[:0] // as the down track's writer reuses its header
		_, _ = numbered.Write(h, payload, nil)
	}); n != 0 {
		t.Fatalf("%.1f allocations per packet numbered", n)
	}
	i.UnbindLocalStream(&interceptor.StreamInfo{SSRC: 2, MimeType: "audio/opus"})

	// The estimator never sees audio: its writer is the one given.
	w := &countingRTPWriter{}
	est := rtxEstimator{nil} // an audio stream must not reach the inner estimator
	if got := est.AddStream(&interceptor.StreamInfo{SSRC: 3, MimeType: "audio/opus"}, w); got != interceptor.RTPWriter(w) {
		t.Fatal("an audio stream was wrapped by the estimator")
	}
}

// TestSenderReportsPassAttributes: the sender-report accounting hands the
// inner interceptors a reused, emptied attributes map, so the estimator
// does not make one per packet; and it does not allocate itself.
func TestSenderReportsPassAttributes(t *testing.T) {
	i, err := (&SenderReportInterceptorFactory{}).NewInterceptor("pc")
	if err != nil {
		t.Fatal(err)
	}
	defer i.Close()
	var got []interceptor.Attributes
	stale := 0
	inner := interceptor.RTPWriterFunc(func(_ *rtp.Header, _ []byte, a interceptor.Attributes) (int, error) {
		got = append(got, a)
		stale += len(a)
		a.Set(len(got), 1) // what an inner interceptor notes for this packet only
		return 0, nil
	})
	w := i.BindLocalStream(&interceptor.StreamInfo{SSRC: 7, ClockRate: 90000, MimeType: "video/VP8"}, inner)
	h := &rtp.Header{Version: 2, SSRC: 7}
	payload := []byte{1, 2, 3}
	_, _ = w.Write(h, payload, nil)
	_, _ = w.Write(h, payload, nil)
	if len(got) != 2 || got[0] == nil {
		t.Fatalf("inner writer got %v, want a map each time", got)
	}
	got = got[:0]
	if n := testing.AllocsPerRun(100, func() {
		h.Timestamp += 3000
		_, _ = w.Write(h, payload, nil)
		got = got[:0]
	}); n != 0 {
		t.Fatalf("%.1f allocations per packet", n)
	}
	if stale != 0 {
		t.Fatalf("%d attributes of earlier packets were still set", stale)
	}
}
