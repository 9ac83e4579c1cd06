package sfu

import (
	"bytes"
	"encoding/binary"
	"testing"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// TestLateRepairOnRTX: packets lost upstream and repaired later are
// forwarded into their slots; one repaired lateOnRTX or more slots behind
// the newest sent goes on the RTX stream (original sequence number first,
// payload as the media stream would have carried it), one less late on
// the media stream. A NACK for it right after gets no second copy at
// once. Without RTX the late one goes on the media stream.
func TestLateRepairOnRTX(t *testing.T) {
	for _, rtx := range []bool{true, false} {
		r := newBenchReceiver(vp8Codec)
		l := r.testLayer(0)
		w := &recordingWriter{}
		var ctx webrtc.TrackLocalContext = fakeContext{codecs: []webrtc.RTPCodecParameters{vp8Codec}, ssrc: 500, w: w}
		if rtx {
			ctx = rtxContext(w)
		}
		d := attachDownTrack(t, r, ctx)
		key, delta := benchPackets()
		r.now.Store(time.Now().UnixNano())
		hdr := &rtp.Header{Version: 2, SequenceNumber: 1000, Timestamp: 1000, SSRC: 42}
		r.forward(l, hdr, key)
		// Lost upstream: late is repaired lateOnRTX slots behind the newest
		// sent (top), soon one slot less.
		const late, soon = 1010, 1011
		const top = late + lateOnRTX
		for seq := uint16(1001); seq < top; seq++ {
			if seq == soon || seq == late {
				continue
			}
			hdr.SequenceNumber, hdr.Timestamp = seq, 1000+uint32(seq-1000)*3000
			setPictureID(delta, seq)
			r.forward(l, hdr, delta)
		}
		d.flush(flushWait)
		base := w.hdrs[0].SequenceNumber // the output of input 1000
		sent := len(w.hdrs)

		hdr.SequenceNumber, hdr.Timestamp = top, 1000+uint32(top-1000)*3000
		setPictureID(delta, top)
		r.forward(l, hdr, delta)
		for _, seq := range []uint16{soon, late} {
			hdr.SequenceNumber, hdr.Timestamp = seq, 1000+uint32(seq-1000)*3000
			setPictureID(delta, seq)
			r.forward(l, hdr, delta)
		}
		d.flush(flushWait)
		if got := len(w.hdrs) - sent; got != 3 {
			t.Fatalf("rtx=%v: %d packets after the repairs came, want 3", rtx, got)
		}
		hs, ps := w.hdrs[sent+1:], w.pays[sent+1:]
		if h := hs[0]; h.SSRC != 500 || h.SequenceNumber != base+soon-1000 {
			t.Fatalf("rtx=%v: repair %d slots behind sent as %+v, want seq %d on the media stream", rtx, top-soon, h, base+soon-1000)
		}
		h, p := hs[1], ps[1]
		wantSeq := base + late - 1000
		if !rtx {
			if h.SSRC != 500 || h.SequenceNumber != wantSeq {
				t.Fatalf("without RTX: late repair sent as %+v, want seq %d on the media stream", h, wantSeq)
			}
			d.Close()
			continue
		}
		if h.SSRC != 501 || h.PayloadType != 97 || h.Timestamp != w.hdrs[0].Timestamp+(late-1000)*3000 {
			t.Fatalf("late repair sent as %+v, want an RTX packet (SSRC 501, pt 97) with the media timestamp", h)
		}
		if osn := binary.BigEndian.Uint16(p); osn != wantSeq || !bytes.Equal(p[2+4:], delta[4:]) {
			t.Fatalf("late repair: original seq %d (want %d), payload as received: %v", osn, wantSeq, bytes.Equal(p[2+4:], delta[4:]))
		}
		d.handleRTCP([]rtcp.Packet{nackFor(500, wantSeq)}) // within minResendGap of the late repair
		d.flush(flushWait)
		if len(w.hdrs) != sent+3 {
			t.Fatalf("a NACK right after the late repair resent it again")
		}
		d.Close()
	}
}

// TestLateRepairAfterProbe: a bandwidth probe's padding sent between a
// loss and its repair does not make the repair unplaceable (it was
// refused until session 22: padding re-based the munger's mapping).
func TestLateRepairAfterProbe(t *testing.T) {
	r := newBenchReceiver(vp8Codec)
	l := r.testLayer(0)
	w := &recordingWriter{}
	d := attachDownTrack(t, r, rtxContext(w))
	defer d.Close()
	key, delta := benchPackets()
	r.now.Store(time.Now().UnixNano())
	// One-packet frames (marker bits): padding waits for a frame's end.
	hdr := &rtp.Header{Version: 2, SequenceNumber: 1000, Timestamp: 1000, SSRC: 42, Marker: true}
	send := func(seq uint16) {
		hdr.SequenceNumber, hdr.Timestamp = seq, 1000+uint32(seq-1000)*3000
		setPictureID(delta, seq)
		r.forward(l, hdr, delta)
	}
	r.forward(l, hdr, key)
	for seq := uint16(1001); seq <= 1005; seq++ {
		if seq != 1003 { // lost
			send(seq)
		}
	}
	if n := d.WritePadding(2); n != 2 {
		t.Fatalf("sent %d padding packets, want 2", n)
	}
	send(1006)
	send(1003) // the repair
	d.flush(flushWait)
	base := w.hdrs[0].SequenceNumber
	last := w.hdrs[len(w.hdrs)-1]
	if len(w.hdrs) != 9 || last.SSRC != 500 || last.SequenceNumber != base+3 {
		t.Fatalf("%d packets; the repair went out as %+v, want 9 with the repair at seq %d", len(w.hdrs), last, base+3)
	}
}

// TestLateRepairAllocs: forwarding a late repair on the RTX stream
// allocates nothing (the hot path's rule).
func TestLateRepairAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("under the race detector sync.Pool drops buffers at random")
	}
	r := newBenchReceiver(vp8Codec)
	l := r.testLayer(0)
	w := &countingWriter{}
	d := attachDownTrack(t, r, rtxContext(w))
	defer d.Close()
	key, delta := benchPackets()
	r.now.Store(time.Now().UnixNano())
	hdr := &rtp.Header{Version: 2, SequenceNumber: 1000, Timestamp: 1000, SSRC: 42}
	send := func(seq uint16) {
		hdr.SequenceNumber, hdr.Timestamp = seq, 1000+uint32(seq-1000)*3000
		setPictureID(delta, seq)
		r.forward(l, hdr, delta)
	}
	r.forward(l, hdr, key)
	for seq := uint16(1101); seq <= 1140; seq++ { // 1001-1100 lost
		send(seq)
	}
	i := uint16(0)
	allocs := testing.AllocsPerRun(50, func() {
		send(1141 + i) // a new packet, then a repair over 100 slots behind it
		send(1001 + i)
		i++
		d.flush(flushWait)
	})
	if allocs != 0 {
		t.Fatalf("%.1f allocations per late repair", allocs)
	}
	if got := counters.lateRepairs.Load(); got < 51 {
		t.Fatalf("%d late repairs counted, want at least 51", got)
	}
}
