package sfu

import (
	"io"
	"log/slog"
	"testing"

	"github.com/pion/interceptor"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"
	"github.com/starling-rtc/starling/internal/clock"
)

// padTrack is a bound VP8 down track of a receiver with its own track id,
// writing into a recordingWriter.
func padTrack(t testing.TB, id string, ssrc webrtc.SSRC) (*DownTrack, *recordingWriter) {
	t.Helper()
	r := NewReceiver(id, vp8Codec, webrtc.RTPCodecTypeVideo,
		func([]rtcp.Packet) error { return nil }, slog.New(slog.NewTextHandler(io.Discard, nil)))
	w := &recordingWriter{}
	d := NewDownTrack(r, "PA_pad")
	d.SetTarget(0)
	if _, err := d.Bind(fakeContext{codecs: []webrtc.RTPCodecParameters{vp8Codec}, ssrc: ssrc, w: w}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.Close)
	return d, w
}

// paddingOn counts the padding-only packets a recordingWriter got.
func paddingOn(d *DownTrack, w *recordingWriter) int {
	d.flush(flushWait)
	w.mu.Lock()
	defer w.mu.Unlock()
	n := 0
	for _, h := range w.hdrs {
		if h.Padding {
			n++
		}
	}
	return n
}

// TestPadTakesTurns: the prober pads the subscriber's tracks in turn, in
// track id order, those that have forwarded media before one that has
// not; the one that has not pads only when no other can. Before, the first
// track in Go's map order took every burst: which one changed from run to
// run.
func TestPadTakesTurns(t *testing.T) {
	s := &Subscriber{down: map[string]*DownTrack{}}
	ids := []string{"TR_c", "TR_a", "TR_b"} // TR_b never forwards media
	tracks := map[string]*DownTrack{}
	writers := map[string]*recordingWriter{}
	key, _ := benchPackets()
	for i, id := range ids {
		d, w := padTrack(t, id, webrtc.SSRC(100+i))
		tracks[id], writers[id] = d, w
		s.down[id] = d
		if id != "TR_b" {
			// A one-packet keyframe: the track has media, its frame ended.
			_ = d.WriteRTP(&rtp.Header{Version: 2, SequenceNumber: 1, Timestamp: 1000, Marker: true}, key, 0)
		}
	}
	var order []string
	for range 4 {
		w, busy := s.pad(2)
		if w != 2 || busy {
			t.Fatalf("pad(2) = %d, %v", w, busy)
		}
		order = append(order, s.padLast)
	}
	if want := []string{"TR_a", "TR_c", "TR_a", "TR_c"}; !equalStrings(order, want) {
		t.Fatalf("padded %v, want %v (tracks with media in turn, by id)", order, want)
	}
	if n := paddingOn(tracks["TR_b"], writers["TR_b"]); n != 0 {
		t.Fatalf("the track without media got %d padding packets while others could take them", n)
	}
	// The subscriber paused both tracks with media: the one without pads.
	tracks["TR_a"].SetPaused(true)
	tracks["TR_c"].SetPaused(true)
	if w, _ := s.pad(3); w != 3 || s.padLast != "TR_b" {
		t.Fatalf("pad(3) = %d on %s, want 3 on TR_b", w, s.padLast)
	}
	if n := paddingOn(tracks["TR_b"], writers["TR_b"]); n != 3 {
		t.Fatalf("the track without media got %d padding packets, want 3", n)
	}
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestPadWaitsForFrameEnd: padding never takes a sequence number between
// two packets of one frame (a libwebrtc receiver assembles a frame from
// consecutive sequence numbers between its first packet and its marker
// bit, and would never complete it); the prober is told to retry, and the
// padding follows the frame's last packet. Paused for bandwidth, an open
// frame does not hold padding back: it will not continue.
func TestPadWaitsForFrameEnd(t *testing.T) {
	d, w := padTrack(t, "TR_frame", 77)
	s := &Subscriber{down: map[string]*DownTrack{"TR_frame": d}}
	key, delta := benchPackets()
	hdr := &rtp.Header{Version: 2, SequenceNumber: 1, Timestamp: 1000}
	_ = d.WriteRTP(hdr, key, 0) // a keyframe's first packet: the frame is open
	if n, busy := s.pad(2); n != 0 || !busy {
		t.Fatalf("pad in the middle of a frame: %d written, busy %v; want 0, true", n, busy)
	}
	hdr.SequenceNumber, hdr.Marker = 2, true
	_ = d.WriteRTP(hdr, delta, 0) // the frame's last packet
	if n, _ := s.pad(2); n != 2 {
		t.Fatalf("pad after the frame's end: %d written, want 2", n)
	}
	d.flush(flushWait)
	w.mu.Lock()
	got := len(w.hdrs)
	frameEnd := w.hdrs[1]
	pad := w.hdrs[2]
	w.mu.Unlock()
	if got != 4 || frameEnd.Padding || !frameEnd.Marker || !pad.Padding || pad.SequenceNumber != frameEnd.SequenceNumber+1 {
		t.Fatalf("%d packets; the frame's end %+v, then %+v: want the padding right after the frame's last packet", got, frameEnd, pad)
	}
	// A frame opens, and the track is paused for bandwidth: padding goes.
	hdr.SequenceNumber, hdr.Timestamp, hdr.Marker = 3, 4000, false
	_ = d.WriteRTP(hdr, delta, 0)
	d.SetLimits(MaxLayers-1, -1)
	if n, _ := s.pad(1); n != 1 {
		t.Fatalf("pad on a track paused for bandwidth in the middle of a frame: %d written, want 1", n)
	}
}

// BenchmarkProberPad: one prober wake on a subscriber with three video
// tracks: the choice of track (the down tracks listed and sorted) and one
// padding packet written. The choice is per burst (every 20 ms of a
// probe), not per packet, but allocates nothing either.
func BenchmarkProberPad(b *testing.B) {
	s := &Subscriber{down: map[string]*DownTrack{}}
	key, _ := benchPackets()
	var tracks []*DownTrack
	for i, id := range []string{"TR_c", "TR_a", "TR_b"} {
		d := NewDownTrack(NewReceiver(id, vp8Codec, webrtc.RTPCodecTypeVideo,
			func([]rtcp.Packet) error { return nil }, slog.New(slog.NewTextHandler(io.Discard, nil))), "PA_pad")
		d.SetTarget(0)
		if _, err := d.Bind(fakeContext{codecs: []webrtc.RTPCodecParameters{vp8Codec}, ssrc: webrtc.SSRC(100 + i), w: &countingWriter{}}); err != nil {
			b.Fatal(err)
		}
		defer d.Close()
		_ = d.WriteRTP(&rtp.Header{Version: 2, SequenceNumber: 1, Timestamp: 1000, Marker: true}, key, 0)
		s.down[id] = d
		tracks = append(tracks, d)
	}
	s.pad(1) // the scratch list's first growth
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		if w, _ := s.pad(1); w != 1 {
			b.Fatal("no padding written")
		}
		if i%64 == 63 { // the writers keep up, as between a probe's wakes
			for _, d := range tracks {
				d.flush(flushWait)
			}
		}
	}
}

// TestPaddingAfterProbeEndKeepsCluster: padding the prober queued before
// its probe ended, but numbered after (the track's writer is a goroutine
// behind the prober), still belongs to the probe: its loss is the probe's
// verdict, not the link's loss record. Before, the last padding of a probe
// into a narrow link, dropped there, counted as the link's loss after the
// probe (on a 400 kbit/s policer, loss verdicts followed each probe for the
// middle layer, and paused a low layer that fitted). Media numbered after
// the end is not the probe's.
func TestPaddingAfterProbeEndKeepsCluster(t *testing.T) {
	i := newBWEInterceptor(1_000_000)
	info := &interceptor.StreamInfo{MimeType: webrtc.MimeTypeVP8,
		RTPHeaderExtensions: []interceptor.RTPHeaderExtension{{URI: sdp.TransportCCURI, ID: 3}}}
	w := i.BindLocalStream(info, interceptor.RTPWriterFunc(func(*rtp.Header, []byte, interceptor.Attributes) (int, error) { return 0, nil }))
	i.lastCluster.Store(9)
	i.cluster.Store(9)
	write := func(pad bool) uint16 {
		seq := uint16(i.next.Load())
		if _, err := w.Write(&rtp.Header{Version: 2, Padding: pad}, paddingPayload, nil); err != nil {
			t.Fatal(err)
		}
		return seq
	}
	during := write(true)
	i.cluster.Store(0) // the probe ended
	late, media := write(true), write(false)
	for _, c := range []struct {
		seq  uint16
		want uint16
		what string
	}{{during, 9, "padding during the probe"}, {late, 9, "padding numbered after its end"}, {media, 0, "media after its end"}} {
		if _, cluster, _, ok := i.est.hist.get(c.seq, clock.Micros()); !ok || cluster != c.want {
			t.Errorf("%s: cluster %d (%v), want %d", c.what, cluster, ok, c.want)
		}
	}
}
