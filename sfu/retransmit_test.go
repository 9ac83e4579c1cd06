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

// testLayer gives a receiver a layer with a packet cache, as AddLayer does
// for a video track, without a remote track.
func (r *Receiver) testLayer(idx int8) *layer {
	l := &layer{idx: idx, cache: newPacketCache()}
	r.mu.Lock()
	r.layer[idx] = l
	r.mu.Unlock()
	return l
}

// attachDownTrack binds a down track of r to ctx, on layer 0, and adds it
// as r's sink.
func attachDownTrack(tb testing.TB, r *Receiver, ctx webrtc.TrackLocalContext) *DownTrack {
	tb.Helper()
	d := NewDownTrack(r, "PA_test")
	d.SetTarget(0)
	if _, err := d.Bind(ctx); err != nil {
		tb.Fatal(err)
	}
	r.AddSink(d)
	return d
}

// rtxContext is a subscriber that negotiated RTX (pt 97, apt=96) for VP8.
func rtxContext(w webrtc.TrackLocalWriter) rtxCtx {
	return rtxCtx{fakeContext{codecs: []webrtc.RTPCodecParameters{vp8Codec, {
		RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: "video/rtx", ClockRate: 90000, SDPFmtpLine: "apt=96"},
		PayloadType:        97,
	}}, ssrc: 500, w: w}}
}

type rtxCtx struct{ fakeContext }

func (rtxCtx) SSRCRetransmission() webrtc.SSRC { return 501 }

func nackFor(ssrc uint32, seqs ...uint16) *rtcp.TransportLayerNack {
	return &rtcp.TransportLayerNack{MediaSSRC: ssrc, Nacks: rtcp.NackPairsFromSequenceNumbers(seqs)}
}

// TestRetransmitFromCache: a NACK is answered on the RTX stream with the
// packet exactly as first sent (rewritten VP8 descriptor included), from
// the receiver's shared cache; a packet is resent at most maxResends times,
// once per minResendGap, and not when it is older than maxResendAge.
func TestRetransmitFromCache(t *testing.T) {
	r := newBenchReceiver(vp8Codec)
	l := r.testLayer(0)
	w := &recordingWriter{}
	d := attachDownTrack(t, r, rtxContext(w))
	defer d.Close()
	key, delta := benchPackets()
	hdr := &rtp.Header{Version: 2, SequenceNumber: 1000, Timestamp: 1000, SSRC: 42}
	r.now.Store(time.Now().UnixNano())
	r.forward(l, hdr, key)
	for i := range 20 {
		hdr.SequenceNumber++
		hdr.Timestamp += 3000
		hdr.Marker = i%2 == 1
		setPictureID(delta, uint16(7000+i)) // rewritten on the way out
		r.forward(l, hdr, delta)
	}
	d.flush(flushWait)
	if len(w.hdrs) != 21 {
		t.Fatalf("forwarded %d packets, want 21", len(w.hdrs))
	}
	sent := append([]rtp.Header(nil), w.hdrs...)
	pays := append([][]byte(nil), w.pays...)

	lost := []int{3, 4, 12}
	var seqs []uint16
	for _, i := range lost {
		seqs = append(seqs, sent[i].SequenceNumber)
	}
	check := func(round int, want int) {
		t.Helper()
		d.flush(flushWait)
		got := w.hdrs[len(sent):]
		if len(got) != want {
			t.Fatalf("round %d: %d retransmissions, want %d", round, len(got), want)
		}
	}
	first := time.Now()
	d.handleRTCP([]rtcp.Packet{nackFor(500, seqs...)})
	check(1, 3)
	for k, i := range lost {
		h, p := w.hdrs[len(sent)+k], w.pays[len(sent)+k]
		if h.SSRC != 501 || h.PayloadType != 97 || h.Timestamp != sent[i].Timestamp || h.Marker != sent[i].Marker {
			t.Fatalf("RTX header %+v for original %+v", h, sent[i])
		}
		if osn := binary.BigEndian.Uint16(p); osn != sent[i].SequenceNumber || !bytes.Equal(p[2:], pays[i]) {
			t.Fatalf("RTX packet for seq %d: osn %d, payload differs from the original: %v", sent[i].SequenceNumber, osn, !bytes.Equal(p[2:], pays[i]))
		}
		if k > 0 && h.SequenceNumber != w.hdrs[len(sent)+k-1].SequenceNumber+1 {
			t.Fatalf("RTX sequence numbers not contiguous")
		}
	}
	d.handleRTCP([]rtcp.Packet{nackFor(500, seqs...)}) // again at once: within minResendGap
	// (on the wall clock: a machine that stalled this goroutine past the gap
	// rightly resends; the total below is capped by maxResends either way)
	if time.Since(first) < minResendGap {
		check(2, 3)
	}
	for n := 2; n <= maxResends+1; n++ {
		time.Sleep(minResendGap + 5*time.Millisecond)
		d.handleRTCP([]rtcp.Packet{nackFor(500, seqs...)})
	}
	check(3, 3*maxResends)
	d.handleRTCP([]rtcp.Packet{nackFor(999, seqs...)})                   // not this track's SSRC
	d.handleRTCP([]rtcp.Packet{nackFor(500, sent[20].SequenceNumber+1)}) // never sent
	check(4, 3*maxResends)

	// Too old to matter.
	r.now.Store(time.Now().Add(-2 * maxResendAge).UnixNano())
	hdr.SequenceNumber++
	r.forward(l, hdr, delta)
	d.flush(flushWait)
	old := w.hdrs[len(w.hdrs)-1].SequenceNumber
	before := len(w.hdrs)
	d.handleRTCP([]rtcp.Packet{nackFor(500, old)})
	d.flush(flushWait)
	if len(w.hdrs) != before {
		t.Fatalf("resent a packet older than %v", maxResendAge)
	}
}

// TestRetransmitWithoutRTX: a subscriber without RTX gets the packet again
// under its own sequence number; after a layer switch the retransmission
// comes from the new layer's cache.
func TestRetransmitWithoutRTX(t *testing.T) {
	r := newBenchReceiver(vp8Codec)
	l0, l1 := r.testLayer(0), r.testLayer(1)
	w := &recordingWriter{}
	d := attachDownTrack(t, r, fakeContext{codecs: []webrtc.RTPCodecParameters{vp8Codec}, ssrc: 600, w: w})
	defer d.Close()
	r.now.Store(time.Now().UnixNano())
	key, delta := benchPackets()
	h0 := &rtp.Header{Version: 2, SequenceNumber: 10, Timestamp: 1000, SSRC: 1}
	h1 := &rtp.Header{Version: 2, SequenceNumber: 5000, Timestamp: 90000, SSRC: 2}
	r.forward(l0, h0, key)
	for i := range 5 {
		h0.SequenceNumber++
		setPictureID(delta, uint16(100+i))
		r.forward(l0, h0, delta)
	}
	d.SetTarget(1)
	r.forward(l1, h1, key)
	for i := range 5 {
		h1.SequenceNumber++
		h1.Timestamp += 3000
		setPictureID(delta, uint16(900+i))
		r.forward(l1, h1, delta)
	}
	d.flush(flushWait)
	if len(w.hdrs) != 12 || d.Current() != 1 {
		t.Fatalf("forwarded %d packets on layer %d, want 12 on layer 1", len(w.hdrs), d.Current())
	}
	for _, i := range []int{2, 8} { // one from each layer
		want := w.hdrs[i]
		wantPay := append([]byte(nil), w.pays[i]...)
		d.handleRTCP([]rtcp.Packet{nackFor(600, want.SequenceNumber)})
		d.flush(flushWait)
		got, pay := w.hdrs[len(w.hdrs)-1], w.pays[len(w.pays)-1]
		if got.SSRC != 600 || got.SequenceNumber != want.SequenceNumber || got.Timestamp != want.Timestamp || !bytes.Equal(pay, wantPay) {
			t.Fatalf("packet %d resent as %+v (payload equal %v), want %+v", i, got, bytes.Equal(pay, wantPay), want)
		}
	}
}

// TestPacketCacheOverwrite: entries whose bytes were overwritten, or whose
// slot went to another sequence number, are misses.
func TestPacketCacheOverwrite(t *testing.T) {
	c := newPacketCache()
	p := bytes.Repeat([]byte{0xab}, 1200)
	dst := make([]byte, maxPacket)
	c.put(1, 0, false, p)
	if n, ok := c.get(1, dst); !ok || n != 1200 {
		t.Fatalf("fresh packet: %d %v", n, ok)
	}
	for s := uint16(2); s < 2+cacheBytes/1200+2; s++ {
		c.put(s, 0, false, p)
	}
	if _, ok := c.get(1, dst); ok {
		t.Fatal("overwritten packet still served")
	}
	last := uint16(2 + cacheBytes/1200 + 1)
	if n, ok := c.get(last, dst); !ok || n != 1200 || !bytes.Equal(dst[:n], p) {
		t.Fatalf("newest packet: %d %v", n, ok)
	}
	if _, ok := c.get(last+cacheEntries, dst); ok {
		t.Fatal("served a sequence number never stored")
	}
	if _, ok := c.get(last, dst[:10]); ok {
		t.Fatal("copied into a too-small buffer")
	}
}

// TestRetransmitVP9: a VP9 packet is resent with the picture id it was
// first sent with (rewritten after a layer switch), from the cache.
func TestRetransmitVP9(t *testing.T) {
	vp9 := webrtc.RTPCodecParameters{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP9, ClockRate: 90000}, PayloadType: 98}
	r := newBenchReceiver(vp9)
	l0, l1 := r.testLayer(0), r.testLayer(1)
	w := &recordingWriter{}
	d := attachDownTrack(t, r, fakeContext{codecs: []webrtc.RTPCodecParameters{vp9}, ssrc: 700, w: w})
	defer d.Close()
	r.now.Store(time.Now().UnixNano())
	key := func(pid uint16) []byte { p := vp9Packet(pid, true, 0, 0, false); p[0] &^= 0x40; return p }
	delta := func(pid uint16) []byte { p := vp9Packet(pid, true, 0, 0, false); p[0] |= 0x40; return p }
	h0 := &rtp.Header{Version: 2, SequenceNumber: 10, Timestamp: 1000}
	h1 := &rtp.Header{Version: 2, SequenceNumber: 900, Timestamp: 5000}
	r.forward(l0, h0, key(50))
	h0.SequenceNumber++
	r.forward(l0, h0, delta(51))
	d.SetTarget(1)
	r.forward(l1, h1, key(20000)) // another layer's picture ids: rewritten to 52...
	h1.SequenceNumber++
	r.forward(l1, h1, delta(20001))
	d.flush(flushWait)
	if len(w.hdrs) != 4 {
		t.Fatalf("forwarded %d packets, want 4", len(w.hdrs))
	}
	for i, want := range []uint16{50, 51, 52, 53} {
		if got, _ := parseVP9(w.pays[i]); got.pid != want {
			t.Fatalf("packet %d: picture id %d, want %d", i, got.pid, want)
		}
	}
	orig := append([]byte(nil), w.pays[3]...)
	d.handleRTCP([]rtcp.Packet{nackFor(700, w.hdrs[3].SequenceNumber)})
	d.flush(flushWait)
	if len(w.pays) != 5 || !bytes.Equal(w.pays[4], orig) {
		t.Fatalf("VP9 retransmission differs from the original: % x vs % x", w.pays[len(w.pays)-1], orig)
	}
}
