package sfu

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
	"go.uber.org/goleak"
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

// boundVP8DownTrack returns a down track of a VP8 receiver, bound with
// SSRC 77 and writing into a recordingWriter.
func boundVP8DownTrack(t *testing.T) (*DownTrack, *recordingWriter) {
	t.Helper()
	w := &recordingWriter{}
	d := NewDownTrack(newBenchReceiver(vp8Codec), "PA_x")
	d.SetTarget(0)
	if _, err := d.Bind(fakeContext{codecs: []webrtc.RTPCodecParameters{vp8Codec}, ssrc: 77, w: w}); err != nil {
		t.Fatal(err)
	}
	return d, w
}

func TestDownTrackStartsOnKeyframe(t *testing.T) {
	d, w := boundVP8DownTrack(t)
	key, delta := benchPackets()
	hdr := &rtp.Header{Version: 2, SequenceNumber: 10, Timestamp: 1000}
	for i := 0; i < 3; i++ { // deltas before any keyframe are not forwarded
		hdr.SequenceNumber++
		_ = d.WriteRTP(hdr, delta, 0)
	}
	d.flush(flushWait)
	if len(w.pays) != 0 {
		t.Fatalf("forwarded %d packets before a keyframe", len(w.pays))
	}
	hdr.SequenceNumber++
	_ = d.WriteRTP(hdr, key, 0)
	hdr.SequenceNumber++
	_ = d.WriteRTP(hdr, delta, 0)
	d.flush(flushWait)
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

// blockingWriter stands in for a transport that stopped draining (ICE-TCP to
// a peer that stopped reading): every write blocks until released.
type blockingWriter struct {
	release chan struct{}
	n       atomic.Int64
}

func (w *blockingWriter) WriteRTP(_ *rtp.Header, payload []byte) (int, error) {
	<-w.release
	w.n.Add(1)
	return len(payload), nil
}
func (w *blockingWriter) Write(b []byte) (int, error) { return len(b), nil }

// TestStalledSubscriberQueue: one subscriber's writes block forever. The
// receiver's goroutine never waits for it, the other subscriber gets every
// packet, and the stalled one's queue stays bounded, its drops counted.
func TestStalledSubscriberQueue(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent()) // Close ends the writer goroutines
	r := newBenchReceiver(vp8Codec)
	good := &countingWriter{}
	stalled := &blockingWriter{release: make(chan struct{})}
	dGood := bindDownTracks(t, r, 1, good)[0]
	dStalled := NewDownTrack(r, "PA_stalled")
	dStalled.SetTarget(0)
	if _, err := dStalled.Bind(fakeContext{codecs: []webrtc.RTPCodecParameters{vp8Codec}, ssrc: 99, w: stalled}); err != nil {
		t.Fatal(err)
	}
	r.AddSink(dStalled)
	dropsBefore := ReadCounters().QueueDrops

	key, delta := benchPackets()
	hdr := &rtp.Header{Version: 2, PayloadType: 96, SequenceNumber: 1, Timestamp: 1000, SSRC: 42}
	const sent = 2000
	done := make(chan struct{})
	go func() {
		defer close(done)
		r.fanOut(hdr, key, 0)
		for i := 1; i < sent; i++ {
			hdr.SequenceNumber++
			hdr.Timestamp += 3000
			setPictureID(delta, uint16(i))
			r.fanOut(hdr, delta, 0)
			if i%32 == 0 {
				dGood.flush(flushWait) // paced like a network, for the good one
			}
		}
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the receiver's goroutine blocked on the stalled subscriber")
	}
	if !dGood.flush(5 * time.Second) {
		t.Fatal("the good subscriber's queue did not drain")
	}
	if got := good.n.Load(); got != sent {
		t.Fatalf("good subscriber got %d of %d packets", got, sent)
	}
	if q := dStalled.queued(); q > videoQueueLen+1 { // +1: the one in the write
		t.Fatalf("stalled queue holds %d packets, bound is %d", q, videoQueueLen+1)
	}
	// One packet is stuck in the write, videoQueueLen wait behind it.
	wantDrops := uint64(sent - videoQueueLen - 1)
	if got := dStalled.Dropped(); got != wantDrops {
		t.Fatalf("stalled subscriber: %d drops counted, want %d", got, wantDrops)
	}
	if got := ReadCounters().QueueDrops - dropsBefore; got < wantDrops {
		t.Fatalf("process queue-drop counter grew by %d, want %d", got, wantDrops)
	}
	if dGood.Dropped() != 0 {
		t.Fatalf("good subscriber dropped %d", dGood.Dropped())
	}
	// The transport recovers: what was queued goes out, in order; Close
	// ends the writer goroutine.
	close(stalled.release)
	if !dStalled.flush(5 * time.Second) {
		t.Fatal("stalled queue did not drain after release")
	}
	if got := stalled.n.Load(); got != videoQueueLen+1 {
		t.Fatalf("released subscriber got %d packets, want %d", got, videoQueueLen+1)
	}
	dGood.Close()
	dStalled.Close()
}
