package sfu

import (
	"fmt"
	"io"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// countingWriter stands in for pion's SRTP write stream.
type countingWriter struct{ n atomic.Int64 }

func (w *countingWriter) WriteRTP(_ *rtp.Header, payload []byte) (int, error) {
	w.n.Add(1)
	return len(payload), nil
}
func (w *countingWriter) Write(b []byte) (int, error) { return len(b), nil }

// fakeContext is what pion hands a TrackLocal when negotiation completes.
type fakeContext struct {
	codecs []webrtc.RTPCodecParameters
	ssrc   webrtc.SSRC
	w      webrtc.TrackLocalWriter
}

func (c fakeContext) CodecParameters() []webrtc.RTPCodecParameters           { return c.codecs }
func (c fakeContext) HeaderExtensions() []webrtc.RTPHeaderExtensionParameter { return nil }
func (c fakeContext) SSRC() webrtc.SSRC                                      { return c.ssrc }
func (c fakeContext) SSRCRetransmission() webrtc.SSRC                        { return 0 }
func (c fakeContext) SSRCForwardErrorCorrection() webrtc.SSRC                { return 0 }
func (c fakeContext) WriteStream() webrtc.TrackLocalWriter                   { return c.w }
func (c fakeContext) ID() string                                             { return "ctx" }
func (c fakeContext) RTCPReader() interceptor.RTCPReader                     { return nil }

var vp8Codec = webrtc.RTPCodecParameters{
	RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000},
	PayloadType:        96,
}

func newBenchReceiver(codec webrtc.RTPCodecParameters) *Receiver {
	return NewReceiver("TR_bench", codec, webrtc.RTPCodecTypeVideo,
		func([]rtcp.Packet) error { return nil }, slog.New(slog.NewTextHandler(io.Discard, nil)))
}

// bindDownTracks attaches n bound down tracks to r.
func bindDownTracks(tb testing.TB, r *Receiver, n int, w webrtc.TrackLocalWriter) []*DownTrack {
	tb.Helper()
	dts := make([]*DownTrack, n)
	for i := range dts {
		d := NewDownTrack(r, fmt.Sprintf("PA_%d", i))
		d.SetTarget(0)
		if _, err := d.Bind(fakeContext{codecs: []webrtc.RTPCodecParameters{r.Codec()}, ssrc: webrtc.SSRC(1000 + i), w: w}); err != nil {
			tb.Fatal(err)
		}
		r.AddSink(d)
		dts[i] = d
	}
	return dts
}

// benchPackets makes a keyframe packet followed by delta packets.
func benchPackets() (key, delta []byte) {
	key = []byte{0x90, 0x80, 0x80, 0x01, 0x10, 0x02, 0x00, 0x9d, 0x01, 0x2a, 0x80, 0x02, 0x68, 0x01}
	delta = []byte{0x90, 0x80, 0x80, 0x02, 0x11, 0x02, 0x00}
	for i := 0; i < 1000; i++ {
		key = append(key, byte(i))
		delta = append(delta, byte(i))
	}
	return key, delta
}

// forwardFrames starts b's timer, forwards a keyframe then b.N one-packet
// delta frames on r's layer 0 (with its NACK cache, as a real video layer),
// and calls burstDone(i) after every burst packets.
func forwardFrames(b *testing.B, r *Receiver, burst int, burstDone func(i int)) {
	l := r.testLayer(0)
	key, delta := benchPackets()
	hdr := &rtp.Header{Version: 2, PayloadType: 96, SequenceNumber: 1, Timestamp: 1000, SSRC: 42, Marker: true}
	r.forward(l, hdr, key)
	b.ReportAllocs()
	b.ResetTimer()
	pid := uint16(1)
	for i := 0; i < b.N; i++ {
		// Every bench packet is a whole frame (S=1, marker): new picture
		// id and timestamp, and it wakes the writers.
		hdr.SequenceNumber++
		hdr.Timestamp += 3000
		pid = (pid + 1) & 0x7fff
		setPictureID(delta, pid)
		r.forward(l, hdr, delta)
		if i%burst == burst-1 {
			burstDone(i)
		}
	}
}

// setPictureID writes a 15-bit VP8 picture id into a bench payload.
func setPictureID(p []byte, pid uint16) {
	p[2] = 0x80 | byte(pid>>8)
	p[3] = byte(pid)
}

// BenchmarkForward measures one received packet fanned out to N down tracks:
// caching for NACKs, munging, VP8 descriptor rewrite, the NACK history and
// queueing on the receiver's goroutine,
// the write call on each down track's writer goroutine (wall time, with both
// sides running on every core the machine has). ns/op divided by N is the
// cost per forwarded packet; allocs/op must be 0.
func BenchmarkForward(b *testing.B) {
	for _, n := range []int{1, 10, 50, 200} {
		b.Run(fmt.Sprintf("subscribers=%d", n), func(b *testing.B) {
			r := newBenchReceiver(vp8Codec)
			w := &countingWriter{}
			dts := bindDownTracks(b, r, n, w)
			forwardFrames(b, r, 64, func(int) {
				flushAll(dts) // a burst at most: queues never overflow
			})
			flushAll(dts)
			b.StopTimer()
			if got := w.n.Load(); got < int64(b.N*n) { // nothing may be dropped
				b.Fatalf("forwarded %d packets, want %d", got, b.N*n)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/fwd-pkt")
		})
	}
}

// TestForwardDoesNotAllocate pins the hot path's zero-allocation rule in the
// ordinary test run, not only in benchmarks.
func TestForwardDoesNotAllocate(t *testing.T) {
	r := newBenchReceiver(vp8Codec)
	w := &countingWriter{}
	dts := bindDownTracks(t, r, 20, w)
	key, delta := benchPackets()
	hdr := &rtp.Header{Version: 2, PayloadType: 96, SequenceNumber: 1, Timestamp: 1000, SSRC: 42, Marker: true}
	r.fanOut(hdr, key, 0)
	pid := uint16(1)
	// Packets arrive paced, as from a network: the writers drain their
	// queues between two, and the pooled buffers are reused.
	forward := func() {
		hdr.SequenceNumber++
		hdr.Timestamp += 3000
		pid++
		setPictureID(delta, pid)
		r.fanOut(hdr, delta, 0)
		for _, d := range dts {
			d.flush(time.Second)
		}
	}
	for range 100 {
		forward() // warm the buffer pool
	}
	allocs := testing.AllocsPerRun(1000, forward)
	if allocs != 0 {
		t.Fatalf("forwarding one packet to 20 down tracks allocates %.1f times, want 0", allocs)
	}
	if w.n.Load() < 20*1000 {
		t.Fatalf("only %d packets forwarded", w.n.Load())
	}
}

// BenchmarkForwardSimulcast feeds three layers into one receiver whose down
// tracks are spread over the layers: each packet is forwarded by a third of
// them and dropped by the rest, as with real simulcast. ns/fwd-pkt counts
// forwarded packets only.
func BenchmarkForwardSimulcast(b *testing.B) {
	const n = 60
	r := newBenchReceiver(vp8Codec)
	w := &countingWriter{}
	dts := bindDownTracks(b, r, n, w)
	for i, d := range dts {
		d.SetTarget(int8(i % MaxLayers))
	}
	key, delta := benchPackets()
	hdrs := [MaxLayers]*rtp.Header{}
	for l := range hdrs {
		hdrs[l] = &rtp.Header{Version: 2, PayloadType: 96, SequenceNumber: uint16(l * 1000), Timestamp: uint32(l * 77777), SSRC: uint32(40 + l), Marker: true}
		r.fanOut(hdrs[l], key, int8(l))
	}
	var pids [MaxLayers]uint16
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		l := i % MaxLayers
		h := hdrs[l]
		h.SequenceNumber++
		// Every bench packet starts a frame (S=1), so each gets a new
		// picture id and timestamp, per layer.
		h.Timestamp += 3000
		pids[l] = (pids[l] + 1) & 0x7fff
		setPictureID(delta, pids[l]+2)
		r.fanOut(h, delta, int8(l))
		if i%64 == 63 {
			flushAll(dts)
		}
	}
	flushAll(dts)
	b.StopTimer()
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(max(1, w.n.Load())), "ns/fwd-pkt")
}

// flushAll waits until every down track has written what it queued.
func flushAll(dts []*DownTrack) {
	for _, d := range dts {
		d.flush(10 * time.Second)
	}
}
