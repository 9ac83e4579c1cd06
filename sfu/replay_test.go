package sfu

import (
	"bytes"
	"sync/atomic"
	"testing"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// vp8Test builds a VP8 payload with a 15-bit picture id: a frame's first
// packet (start, a keyframe or not) or a later one; its last byte is tag,
// to tell the packets apart at the subscriber.
func vp8Test(pid uint16, start, key bool, tag byte) []byte {
	b0 := byte(0x80) // X
	if start {
		b0 |= 0x10 // S, partition 0
	}
	p := []byte{b0, 0x80, 0x80 | byte(pid>>8), byte(pid)}
	if start {
		tagByte := byte(0x11) // P=1: interframe
		if key {
			tagByte = 0x10
		}
		p = append(p, tagByte, 0x02, 0x00, 0x9d, 0x01, 0x2a)
	}
	for i := 0; i < 100; i++ {
		p = append(p, byte(i))
	}
	return append(p, tag)
}

type testPacket struct {
	seq     uint16
	ts      uint32
	marker  bool
	payload []byte
}

// replayStream is a delta frame (seq 19), a keyframe in four packets
// (20-23) and two delta frames (24; 25-26), as a publisher sends them.
func replayStream() map[uint16]testPacket {
	pk := func(seq uint16, ts uint32, marker bool, pid uint16, start, key bool) testPacket {
		return testPacket{seq, ts, marker, vp8Test(pid, start, key, byte(seq))}
	}
	s := map[uint16]testPacket{}
	for _, p := range []testPacket{
		pk(19, 0, true, 1, true, false),
		pk(20, 3000, false, 2, true, true), pk(21, 3000, false, 2, false, false),
		pk(22, 3000, false, 2, false, false), pk(23, 3000, true, 2, false, false),
		pk(24, 6000, true, 3, true, false),
		pk(25, 9000, false, 4, true, false), pk(26, 9000, true, 4, false, false),
	} {
		s[p.seq] = p
	}
	return s
}

// replayDownTrack is a bound VP8 down track on layer 0 of a receiver whose
// layer keeps the packet cache, as a video layer does.
func replayDownTrack(t *testing.T) (*Receiver, *layer, *DownTrack, *recordingWriter) {
	t.Helper()
	r := newBenchReceiver(vp8Codec)
	l := r.testLayer(0)
	w := &recordingWriter{}
	d := attachDownTrack(t, r, fakeContext{codecs: []webrtc.RTPCodecParameters{vp8Codec}, ssrc: 77, w: w})
	t.Cleanup(d.Close)
	return r, l, d, w
}

func feed(r *Receiver, l *layer, stream map[uint16]testPacket, order ...uint16) {
	for _, seq := range order {
		p := stream[seq]
		r.forward(l, &rtp.Header{Version: 2, PayloadType: 96, SSRC: 42, SequenceNumber: p.seq, Timestamp: p.ts, Marker: p.marker}, p.payload)
	}
}

// TestDownTrackReplaysLateKeyframe: the keyframe's first packet (20) is
// lost upstream; the keyframe's third and fourth packets and the next
// frame arrive first, are refused (no keyframe yet), then the repair of 20
// starts the stream. The subscriber gets every packet from 20 on, each in
// the output slot it would have had in order, with its timestamp and
// marker: 22-24 replayed from the cache right after 20, 21 (repaired
// later still) into the hole left for it. Before the replay, 22-24 were
// never sent: holes no NACK could fill (TestLossRecoveryUpstream lost the
// 2-3 packets after such a start about one run in eight).
func TestDownTrackReplaysLateKeyframe(t *testing.T) {
	r, l, d, w := replayDownTrack(t)
	stream := replayStream()
	feed(r, l, stream, 19, 22, 23, 24, 20, 25, 21, 26)
	if !d.flush(flushWait) {
		t.Fatal("the down track's writer did not drain its queue")
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.pays) == 0 || !IsKeyframeStart(CodecVP8, w.pays[0]) {
		t.Fatalf("the stream did not start on the keyframe (%d packets sent)", len(w.pays))
	}
	first, firstTS := w.hdrs[0].SequenceNumber, w.hdrs[0].Timestamp
	got := map[uint16]bool{}
	for i, h := range w.hdrs {
		pay := w.pays[i]
		in := uint16(pay[len(pay)-1])
		p, ok := stream[in]
		if !ok || in < 20 {
			t.Fatalf("sent input packet %d (only 20-26 are due)", in)
		}
		if got[in] {
			t.Fatalf("sent input packet %d twice", in)
		}
		got[in] = true
		if h.SequenceNumber-first != in-20 || h.Timestamp-firstTS != p.ts-3000 || h.Marker != p.marker {
			t.Errorf("input %d went out as seq +%d ts +%d marker %v; want seq +%d ts +%d marker %v",
				in, h.SequenceNumber-first, h.Timestamp-firstTS, h.Marker, in-20, p.ts-3000, p.marker)
		}
		if body := p.payload[4:]; !bytes.Equal(pay[len(pay)-len(body):], body) {
			t.Errorf("input %d: payload changed beyond its descriptor", in)
		}
	}
	for seq := uint16(20); seq <= 26; seq++ {
		if !got[seq] {
			t.Errorf("input packet %d never reached the subscriber", seq)
		}
	}
}

// TestLateKeyframeReplayStaysInItsStretch: refused packets are replayed only
// when they lie after the late keyframe start and within a second of its
// media time. Packets refused under the same numbers from another stretch
// (a publisher whose sequence numbers and timestamps jumped back) are
// not: they would show the subscriber frames from elsewhere.
func TestLateKeyframeReplayStaysInItsStretch(t *testing.T) {
	r, l, d, w := replayDownTrack(t)
	stream := replayStream()
	far := stream[22]
	far.ts += 10 * 90000 // ten seconds away
	stream[22] = far
	feed(r, l, stream, 22, 20, 21, 23)
	if !d.flush(flushWait) {
		t.Fatal("the down track's writer did not drain its queue")
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	var ins []int
	for _, pay := range w.pays {
		ins = append(ins, int(pay[len(pay)-1]))
	}
	if len(ins) != 3 || ins[0] != 20 || ins[1] != 21 || ins[2] != 23 {
		t.Fatalf("sent inputs %v, want [20 21 23]", ins)
	}
	if w.hdrs[2].SequenceNumber-w.hdrs[0].SequenceNumber != 3 {
		t.Fatalf("23 went out %d after 20, want 3 (a hole for 22)", w.hdrs[2].SequenceNumber-w.hdrs[0].SequenceNumber)
	}
}

// TestLateKeyframeReplaysWhatCameBeforeBind: the keyframe's later packets
// and the next frames reached the receiver before this subscriber's down
// track was bound (its answer still on its way), so the down track never
// refused them; the keyframe's first packet, lost upstream, is repaired
// once it is bound and starts the stream. The packets after it come from
// the receiver's cache all the same. The stream crosses the sequence
// number wrap, as the server tests' fake publisher's does. Before, only
// packets the down track itself had refused were replayed:
// TestLossRecoveryUpstream's second subscriber, bound a few frames after
// the first, lost the 14 packets after such a start (seq 65016-65029).
func TestLateKeyframeReplaysWhatCameBeforeBind(t *testing.T) {
	for _, tc := range []struct {
		name  string
		unset func(d *DownTrack) func() // makes d refuse everything; returns the undo
	}{
		{"unbound", func(d *DownTrack) func() {
			d.mu.Lock()
			d.bound = false
			d.mu.Unlock()
			return func() {
				d.mu.Lock()
				d.bound = true
				d.mu.Unlock()
			}
		}},
		{"not connected", func(d *DownTrack) func() {
			var up atomic.Bool
			d.setTransport(&up)
			return func() { up.Store(true) }
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, l, d, w := replayDownTrack(t)
			stream := map[uint16]testPacket{}
			pk := func(seq uint16, ts uint32, marker bool, pid uint16, start, key bool) {
				stream[seq] = testPacket{seq, ts, marker, vp8Test(pid, start, key, byte(seq))}
			}
			// A keyframe 65533-65535, delta frames 0-2 and 3-5 (ts wraps too).
			pk(65533, 4294964296, false, 7, true, true)
			pk(65534, 4294964296, false, 7, false, false)
			pk(65535, 4294964296, true, 7, false, false)
			pk(0, 0, false, 8, true, false)
			pk(1, 0, false, 8, false, false)
			pk(2, 0, true, 8, false, false)
			pk(3, 3000, false, 9, true, false)
			pk(4, 3000, false, 9, false, false)
			pk(5, 3000, true, 9, false, false)
			undo := tc.unset(d)
			feed(r, l, stream, 65534, 65535, 0, 1, 2)
			undo()
			feed(r, l, stream, 65533, 3, 4, 5)
			if !d.flush(flushWait) {
				t.Fatal("the down track's writer did not drain its queue")
			}
			w.mu.Lock()
			defer w.mu.Unlock()
			want := []uint16{65533, 65534, 65535, 0, 1, 2, 3, 4, 5}
			if len(w.pays) != len(want) {
				t.Fatalf("sent %d packets, want %d (every packet from the keyframe on)", len(w.pays), len(want))
			}
			for i, pay := range w.pays {
				in := stream[want[i]]
				if pay[len(pay)-1] != byte(want[i]) {
					t.Fatalf("packet %d sent is input %d, want %d", i, pay[len(pay)-1], byte(want[i]))
				}
				if h := w.hdrs[i]; h.SequenceNumber-w.hdrs[0].SequenceNumber != uint16(i) ||
					h.Timestamp-w.hdrs[0].Timestamp != in.ts-4294964296 || h.Marker != in.marker {
					t.Errorf("input %d went out as seq +%d ts +%d marker %v", want[i],
						h.SequenceNumber-w.hdrs[0].SequenceNumber, h.Timestamp-w.hdrs[0].Timestamp, h.Marker)
				}
			}
		})
	}
}

// TestPacketCacheNewest: a late repair does not lower the newest sequence
// number, the wrap does not confuse it, and a publisher whose numbering
// jumped far back starts it over.
func TestPacketCacheNewest(t *testing.T) {
	c := newPacketCache()
	if _, ok := c.newest(); ok {
		t.Fatal("an empty cache has a newest packet")
	}
	for _, step := range []struct{ put, want uint16 }{
		{65534, 65534}, {65535, 65535}, {0, 0}, {65533, 0}, {2, 2},
		{40000, 40000}, // 27072 back: a jump, not a repair
		{39990, 40000},
	} {
		c.put(step.put, 0, false, []byte{1})
		if got, _ := c.newest(); got != step.want {
			t.Fatalf("after %d, newest is %d, want %d", step.put, got, step.want)
		}
	}
}
