package sfu

import (
	"sync"
	"testing"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// recordingWriter keeps what a down track writes.
type recordingWriter struct {
	mu   sync.Mutex
	hdrs []rtp.Header
	pays [][]byte
}

func (w *recordingWriter) WriteRTP(h *rtp.Header, payload []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.hdrs = append(w.hdrs, *h)
	w.pays = append(w.pays, append([]byte(nil), payload...))
	return len(payload), nil
}
func (w *recordingWriter) Write(b []byte) (int, error) { return len(b), nil }

func TestDownTrackStartsOnKeyframe(t *testing.T) {
	r := newBenchReceiver(vp8Codec)
	w := &recordingWriter{}
	d := NewDownTrack(r, "PA_x")
	d.SetTarget(0)
	if _, err := d.Bind(fakeContext{codecs: []webrtc.RTPCodecParameters{vp8Codec}, ssrc: 77, w: w}); err != nil {
		t.Fatal(err)
	}
	key, delta := benchPackets()
	hdr := &rtp.Header{Version: 2, SequenceNumber: 10, Timestamp: 1000}
	for i := 0; i < 3; i++ { // deltas before any keyframe are not forwarded
		hdr.SequenceNumber++
		_ = d.WriteRTP(hdr, delta, 0)
	}
	if len(w.pays) != 0 {
		t.Fatalf("forwarded %d packets before a keyframe", len(w.pays))
	}
	hdr.SequenceNumber++
	_ = d.WriteRTP(hdr, key, 0)
	hdr.SequenceNumber++
	_ = d.WriteRTP(hdr, delta, 0)
	if len(w.pays) != 2 {
		t.Fatalf("forwarded %d packets, want 2", len(w.pays))
	}
	if !IsKeyframeStart(CodecVP8, w.pays[0]) {
		t.Fatalf("first forwarded packet is not a keyframe: % x", w.pays[0][:8])
	}
	if w.hdrs[0].SSRC != 77 || w.hdrs[1].SequenceNumber != w.hdrs[0].SequenceNumber+1 {
		t.Fatalf("headers not rewritten: %+v", w.hdrs)
	}
}
