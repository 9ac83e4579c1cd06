package sfu

import (
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// A down track handed over to a new source (a drained publisher's track
// coming back through another node) keeps forwarding the old source until
// the new one sends a keyframe, then forwards only the new one: the
// subscriber sees one stream, same SSRC, sequence numbers going on by one.
func TestDownTrackHandover(t *testing.T) {
	w := &recordingWriter{}
	old, next := newBenchReceiver(vp8Codec), newBenchReceiver(vp8Codec)
	d := NewDownTrack(old, "PA_x")
	d.SetTarget(0)
	if _, err := d.Bind(fakeContext{codecs: []webrtc.RTPCodecParameters{vp8Codec}, ssrc: 77, w: w}); err != nil {
		t.Fatal(err)
	}
	old.AddSink(d)
	key, delta := benchPackets()
	oh := &rtp.Header{Version: 2, SequenceNumber: 100, Timestamp: 5000}
	nh := &rtp.Header{Version: 2, SequenceNumber: 40000, Timestamp: 900000}
	send := func(r *Receiver, h *rtp.Header, p []byte) {
		h.SequenceNumber++
		h.Timestamp += 3000
		r.fanOut(h, p, 0)
	}
	send(old, oh, key)
	send(old, oh, delta)
	if !d.Handover(next) || !d.HandingOver() || d.Source() != next {
		t.Fatal("the handover did not start")
	}
	send(next, nh, delta) // not a keyframe: the old source goes on
	send(old, oh, delta)
	send(old, oh, delta)
	send(next, nh, key)  // the switch
	send(old, oh, delta) // late: dropped
	send(next, nh, delta)
	d.flush(flushWait)
	if d.HandingOver() {
		t.Fatal("still handing over after the new source's keyframe")
	}
	if got := len(old.Sinks()); got != 0 {
		// The old source lets go of the handover's sink asynchronously.
		deadline := time.Now().Add(5 * time.Second)
		for len(old.Sinks()) != 0 && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		if len(old.Sinks()) != 0 {
			t.Fatalf("the old source still has %d sinks", len(old.Sinks()))
		}
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.hdrs) != 6 { // key, delta, delta, delta from old; key, delta from next
		t.Fatalf("forwarded %d packets, want 6", len(w.hdrs))
	}
	for i, h := range w.hdrs {
		if h.SSRC != 77 {
			t.Fatalf("packet %d has SSRC %d, want 77", i, h.SSRC)
		}
		if i > 0 && h.SequenceNumber != w.hdrs[i-1].SequenceNumber+1 {
			t.Fatalf("sequence numbers %d then %d: not continuous", w.hdrs[i-1].SequenceNumber, h.SequenceNumber)
		}
		if i > 0 && int32(h.Timestamp-w.hdrs[i-1].Timestamp) <= 0 {
			t.Fatalf("timestamp %d then %d: not going on", w.hdrs[i-1].Timestamp, h.Timestamp)
		}
	}
	if !IsKeyframeStart(CodecVP8, w.pays[4]) {
		t.Fatal("the first packet of the new source is not its keyframe")
	}
	if d.Handover(next) {
		t.Fatal("a handover to the current source started")
	}
	d.Close()
}
