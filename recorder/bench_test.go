package recorder

import (
	"path/filepath"
	"runtime"
	"testing"

	"github.com/pion/rtp"
	"github.com/pion/rtp/codecs"
	"github.com/pion/webrtc/v4"
	"github.com/starling-rtc/starling/internal/testutil"
)

// BenchmarkSinkWriteRTP is the cost a recorder adds to the receiver's
// goroutine per packet (copy into a preallocated buffer, queue). The
// writer goroutine drains concurrently; drops are not counted as work.
func BenchmarkSinkWriteRTP(b *testing.B) {
	src := newFakeSource("TR_b", webrtc.MimeTypeOpus, 48000, 2)
	rec, err := NewTrackRecorder(src, TrackOptions{Logger: quiet, Dir: b.TempDir(), Name: "b"})
	if err != nil {
		b.Fatal(err)
	}
	defer rec.Stop()
	hdr := &rtp.Header{Version: 2, PayloadType: 111, SSRC: 1}
	payload := make([]byte, 80)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		hdr.SequenceNumber = uint16(i)
		hdr.Timestamp = uint32(i) * 960
		_ = rec.WriteRTP(hdr, payload, 0)
	}
}

// BenchmarkRecordVP8Frame is the whole cost of recording one 320x180 VP8
// frame (~5 packets): sink, jitter buffer, depacketizing, WebM muxing and
// the file write, measured end to end (the loop waits for the writer).
// CPU per recorded track = ns/op x frames per second.
func BenchmarkRecordVP8Frame(b *testing.B) {
	frames := testutil.ReadIVF(b, filepath.Join("testdata", "video.ivf"))
	src := newFakeSource("TR_b", webrtc.MimeTypeVP8, 90000, 0)
	rec, err := NewTrackRecorder(src, TrackOptions{Logger: quiet, Dir: b.TempDir(), Name: "b"})
	if err != nil {
		b.Fatal(err)
	}
	p := rtp.NewPacketizer(1200, 96, 1, &codecs.VP8Payloader{EnablePictureID: true}, rtp.NewRandomSequencer(), 90000)
	pkts := make([][]*rtp.Packet, len(frames))
	b.ReportAllocs()
	b.ResetTimer()
	var bytes int64
	for i := 0; i < b.N; i++ {
		f := frames[i%len(frames)]
		bytes += int64(len(f))
		pkts[i%len(frames)] = p.Packetize(f, 3000)
		for _, pk := range pkts[i%len(frames)] {
			src.write(pk, 0)
		}
		for len(rec.queue) > 0 {
			runtime.Gosched()
		}
	}
	b.StopTimer()
	res := rec.Stop()
	if res.Drops > 0 {
		b.Fatalf("%d packets dropped", res.Drops)
	}
	b.SetBytes(bytes / int64(b.N))
}

// BenchmarkRecorderMemory reports the heap a recorded track holds (its
// preallocated packet buffers and jitter buffer), after its first frame.
func BenchmarkRecorderMemory(b *testing.B) {
	for _, kind := range []struct{ name, mime string }{{"video", webrtc.MimeTypeVP8}, {"audio", webrtc.MimeTypeOpus}} {
		b.Run(kind.name, func(b *testing.B) {
			dir := b.TempDir()
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			recs := make([]*TrackRecorder, 0, b.N)
			for i := 0; i < b.N; i++ {
				src := newFakeSource("TR_m", kind.mime, 90000, 2)
				rec, err := NewTrackRecorder(src, TrackOptions{Logger: quiet, Dir: dir, Name: "m" + string(rune('a'+i%26)) + string(rune('a'+i/26%26)) + string(rune('a'+i/676%26))})
				if err != nil {
					b.Fatal(err)
				}
				recs = append(recs, rec)
			}
			runtime.GC()
			runtime.ReadMemStats(&after)
			b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/float64(b.N)/(1<<20), "MiB/track")
			for _, r := range recs {
				r.Stop()
			}
		})
	}
}
