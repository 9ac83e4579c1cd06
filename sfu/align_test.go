package sfu

import (
	"encoding/binary"
	"testing"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// An audio handover goes over where the two sources meet, whichever path
// is ahead: the subscriber gets every frame once, in order, with
// continuous sequence numbers and timestamps (the publisher writes the
// same frames to both connections, numbered in the payload here).
func TestAudioHandoverAligned(t *testing.T) {
	for _, c := range []struct {
		name string
		lead int // frames the new path is ahead of the old one (negative: behind)
	}{{"new ahead", 4}, {"new behind", -3}, {"level", 0}} {
		t.Run(c.name, func(t *testing.T) {
			frames, last := audioHandover(t, c.lead, false)
			if len(frames) != int(last)+1 {
				t.Fatalf("frames forwarded %v, want 0..%d once each", frames, last)
			}
			for i := range frames {
				if frames[i] != uint32(i) {
					t.Fatalf("frames forwarded %v, want 0..%d once each", frames, last)
				}
			}
		})
	}
}

// Two encodings of the same audio (a browser's two connections) have no
// frame in common: the handover goes over at the new source's newest packet
// once it has held alignHold of them, and the old source went on till then.
func TestAudioHandoverNoCommonFrame(t *testing.T) {
	frames, _ := audioHandover(t, 2, true)
	if len(frames) == 0 || frames[len(frames)-1] < 1000 {
		t.Fatalf("the new source never took over: %v", frames)
	}
}

// audioHandover feeds a down track frames 0.. from an old source; the new
// source starts lead frames ahead of it (same timestamps and payloads, or
// other ones with distinct), and returns the frame numbers forwarded and
// the last one sent.
func audioHandover(t *testing.T, lead int, distinct bool) (frames []uint32, last uint32) {
	t.Helper()
	w := &recordingWriter{}
	old, next := newBenchReceiver(opusCodec), newBenchReceiver(opusCodec)
	old.kind, next.kind = webrtc.RTPCodecTypeAudio, webrtc.RTPCodecTypeAudio
	d := NewDownTrack(old, "PA_x")
	if _, err := d.Bind(fakeContext{codecs: []webrtc.RTPCodecParameters{opusCodec}, ssrc: 77, w: w}); err != nil {
		t.Fatal(err)
	}
	old.AddSink(d)
	frame := func(r *Receiver, n int, seqBase uint16, tsBase uint32, mark uint32) {
		p := make([]byte, 40)
		p[0] = 0x78
		binary.BigEndian.PutUint32(p[1:], uint32(n)+mark)
		r.fanOut(&rtp.Header{Version: 2, SequenceNumber: seqBase + uint16(n), Timestamp: tsBase + uint32(n)*960}, p, 0)
	}
	const oldSeq, newSeq, newTS = 100, 30000, 5000000 // its own sequence and timestamps
	mark := uint32(0)
	if distinct {
		mark = 1000
	}
	for n := 0; n < 10; n++ {
		frame(old, n, oldSeq, 0, 0)
	}
	if !d.Handover(next) {
		t.Fatal("the handover did not start")
	}
	// From frame 10 on both paths deliver, the new one lead frames apart.
	n := 10
	for ; n < 10+alignHold+20; n++ {
		frame(old, n, oldSeq, 0, 0)
		if m := n + lead; m >= 10 {
			frame(next, m, newSeq, newTS, mark)
		}
		if !d.HandingOver() && n > 20 {
			break
		}
	}
	for k := 1; k <= 10; k++ { // the new path alone
		if m := n + lead + k; m >= 10 {
			frame(next, m, newSeq, newTS, mark)
			last = uint32(m)
		}
	}
	d.flush(flushWait)
	if d.HandingOver() {
		t.Fatal("still handing over")
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	for i, h := range w.hdrs {
		if i > 0 && (h.SequenceNumber != w.hdrs[i-1].SequenceNumber+1 || int32(h.Timestamp-w.hdrs[i-1].Timestamp) <= 0) {
			t.Fatalf("packet %d: seq %d ts %d after seq %d ts %d: not continuous", i, h.SequenceNumber, h.Timestamp,
				w.hdrs[i-1].SequenceNumber, w.hdrs[i-1].Timestamp)
		}
		frames = append(frames, binary.BigEndian.Uint32(w.pays[i][1:]))
	}
	return frames, last
}
