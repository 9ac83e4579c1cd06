package sfu

import (
	"testing"
	"time"

	"github.com/pion/rtp"
	"go.uber.org/goleak"
)

// TestFrameWakesWriterOnce: a video frame's packets wait in the queue until
// its last one (marker bit) arrives and then leave together, in order; a
// frame whose last packet never comes still leaves after holdTime; a
// keyframe longer than holdMax packets is not held whole.
func TestFrameWakesWriterOnce(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	d, w := boundVP8DownTrack(t)
	defer d.Close()
	key, delta := benchPackets()
	seq := uint16(100)
	send := func(p []byte, marker bool) {
		seq++
		_ = d.WriteRTP(&rtp.Header{Version: 2, SequenceNumber: seq, Timestamp: 9000, Marker: marker}, p, 0)
	}
	written := func() int {
		w.mu.Lock()
		defer w.mu.Unlock()
		return len(w.pays)
	}
	held := func() int {
		d.mu.Lock()
		defer d.mu.Unlock()
		return d.queue.held
	}

	// A frame of 4 packets: the first three are held, the marker wakes the
	// writer for all four. (If this machine stalls for holdTime between
	// two writes the timer may release early; the count below still holds.)
	start := time.Now()
	send(key, false)
	send(delta, false)
	send(delta, false)
	if h := held(); h != 3 && time.Since(start) < holdTime {
		t.Fatalf("%d packets held before the frame's last one, want 3", h)
	}
	send(delta, true)
	if h := held(); h != 0 {
		t.Fatalf("%d packets still held after the marker", h)
	}
	if !d.flush(flushWait) || written() != 4 {
		t.Fatalf("%d of 4 packets written after the marker", written())
	}
	for i := 1; i < 4; i++ {
		if w.hdrs[i].SequenceNumber != w.hdrs[i-1].SequenceNumber+1 {
			t.Fatalf("out of order: %d after %d", w.hdrs[i].SequenceNumber, w.hdrs[i-1].SequenceNumber)
		}
	}

	// A frame whose last packet is lost: released by the timer.
	send(delta, false)
	send(delta, false)
	deadline := time.Now().Add(time.Second)
	for written() < 6 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if written() != 6 {
		t.Fatalf("%d of 6 packets written: a frame without its marker stayed held", written())
	}

	// A long keyframe: the writer is woken every holdMax packets.
	for range holdMax {
		send(delta, false)
	}
	if h := held(); h != 0 {
		t.Fatalf("%d packets held after holdMax without a marker, want 0", h)
	}
}

// flushWait bounds the tests' waits for a down track's send queue
// (DownTrack.flush returns as soon as it is handled): the writer goroutine
// can be a second late on a starved machine under -race, and a test that
// went on after a short timeout judged packets not sent yet.
const flushWait = 30 * time.Second
