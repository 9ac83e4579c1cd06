//go:build unix

package recorder

import (
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/rtp/codecs"
	"github.com/pion/webrtc/v4"
	"github.com/pion/webrtc/v4/pkg/media/samplebuilder"
	"github.com/starling-rtc/starling/protocol"
	"github.com/starling-rtc/starling/room"
)

// The benchmarks in this file feed the recorder the same synthetic media as
// starling-load's publishers (bench/loadgen/media.go): VP8 frames sized
// from a bit rate (keyframes ≈ 4× an average frame every 2 s, delta frames
// ±25%) in ≤ 1200-byte packets with a 15-bit picture id, and one Opus
// packet per 20 ms. Packets go through sfu.Sink.WriteRTP exactly as the
// server's receiver delivers them, and files are written to a temporary
// folder (page cache, like the server's disk writes).
//
//	go test ./recorder -run X -bench 'RecordTrack|RecordingMemory' -benchmem

// synthStream generates one track's RTP packets.
type synthStream struct {
	video       bool
	fps         int
	key, delta  int // frame sizes, bytes
	keyEvery    int // frames
	audioSize   int
	frame       int
	rng         uint64
	hdr         rtp.Header
	pid         uint16
	buf         [][]byte // per packet of the current frame
	pkts        []rtp.Packet
	packetsPerS float64 // long-run packet rate
	fixed       bool    // every frame s.key bytes (no keyframe size, no jitter)
}

const synthChunk = 1200 - 12 - 4 // RTP payload after the VP8 descriptor

func newVideoStream(bitrate int64, fps int, seed uint64) *synthStream {
	avg := int(bitrate / 8 / int64(fps))
	keyEvery := 2 * fps
	key := 4 * avg
	delta := (keyEvery*avg - key) / (keyEvery - 1)
	s := &synthStream{video: true, fps: fps, key: key, delta: delta, keyEvery: keyEvery, rng: seed | 1,
		hdr: rtp.Header{Version: 2, PayloadType: 96, SSRC: uint32(seed), SequenceNumber: uint16(seed)}}
	// packets per second: one keyframe and keyEvery-1 delta frames per period
	perPeriod := (key+synthChunk-1)/synthChunk + (keyEvery-1)*((delta+synthChunk-1)/synthChunk)
	s.packetsPerS = float64(perPeriod) * float64(fps) / float64(keyEvery)
	return s
}

func newAudioStream(bitrate int64, seed uint64) *synthStream {
	return &synthStream{audioSize: max(int(bitrate/8/50), 16), packetsPerS: 50,
		hdr: rtp.Header{Version: 2, PayloadType: 111, SSRC: uint32(seed), SequenceNumber: uint16(seed)}}
}

// duration of one frame (video) or packet (audio).
func (s *synthStream) interval() time.Duration {
	if s.video {
		return time.Second / time.Duration(s.fps)
	}
	return 20 * time.Millisecond
}

// next returns the packets of the next frame (valid until the next call).
func (s *synthStream) next() []rtp.Packet {
	s.pkts = s.pkts[:0]
	if !s.video {
		if len(s.buf) == 0 {
			b := make([]byte, s.audioSize)
			for i := range b {
				b[i] = byte(i*17 + 3)
			}
			b[0] = 0xfc // TOC: CELT-only fullband 20 ms, stereo, one frame
			s.buf = append(s.buf, b)
		}
		s.pkts = append(s.pkts, rtp.Packet{Header: s.hdr, Payload: s.buf[0]})
		s.hdr.SequenceNumber++
		s.hdr.Timestamp += 960
		return s.pkts
	}
	key := s.frame%s.keyEvery == 0
	size := s.key
	if !key && !s.fixed {
		s.rng ^= s.rng << 13
		s.rng ^= s.rng >> 7
		s.rng ^= s.rng << 17
		size = max(64, s.delta+s.delta*(int(s.rng%51)-25)/100)
	}
	parts := (size + synthChunk - 1) / synthChunk
	for len(s.buf) < parts {
		b := make([]byte, 1200-12)
		for i := range b {
			b[i] = byte(i*31 + 7)
		}
		s.buf = append(s.buf, b)
	}
	for part := 0; part < parts; part++ {
		chunk := size / parts
		if part < size%parts {
			chunk++
		}
		p := s.buf[part][:4+chunk]
		p[0] = 0x80 // X
		if part == 0 {
			p[0] |= 0x10 // S
		}
		p[1] = 0x80
		p[2] = 0x80 | byte(s.pid>>8)&0x7f
		p[3] = byte(s.pid)
		if part == 0 {
			tag := uint32(min(size/4, 1<<19-1))<<5 | 1<<4
			if !key {
				tag |= 1
			}
			p[4], p[5], p[6] = byte(tag), byte(tag>>8), byte(tag>>16)
			if key {
				p[7], p[8], p[9] = 0x9d, 0x01, 0x2a
				binary.LittleEndian.PutUint16(p[10:], 1280)
				binary.LittleEndian.PutUint16(p[12:], 720)
			} else {
				p[7], p[8], p[9] = 0x11, 0x22, 0x33 // no start code
			}
		}
		h := s.hdr
		h.Marker = part == parts-1
		s.pkts = append(s.pkts, rtp.Packet{Header: h, Payload: p})
		s.hdr.SequenceNumber++
	}
	s.hdr.Timestamp += uint32(90000 / s.fps)
	s.pid = (s.pid + 1) & 0x7fff
	s.frame++
	return s.pkts
}

// drain waits until the recorder's writer has taken every queued packet.
// It sleeps rather than spins, so the waiting costs (almost) no CPU.
func drain(rec *TrackRecorder) {
	for len(rec.queue) > 0 {
		time.Sleep(50 * time.Microsecond)
	}
}

// cpuTime is the CPU time this process used (user + system).
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkRecordTrack is the cost of recording one track of the load
// generator's media, per RTP packet, measured as the process's CPU time
// (getrusage): the sink (copy and queue, on the receiver's goroutine) and
// the writer goroutine (jitter buffer, depacketizing, WebM muxing, the file
// write) and the GC they cause: cpu-ns/pkt. Frames are fed in batches of
// up to half the recorder's queue, then the loop sleeps until the writer
// has taken them, so waking the writer is paid once per batch; in the
// server it is woken up to once per packet, which costs more (see the
// "Recording under load" figures in docs/benchmarks.md). %core is
// cpu-ns/pkt at the stream's packet rate (pkt/s): the share of one core
// one recorded track of this kind takes. sink-ns/pkt is the part spent in
// WriteRTP, which is what forwarding to the other subscribers of the track
// waits for. ns/op is wall time, waiting included; B/op and allocs/op
// count both goroutines.
func BenchmarkRecordTrack(b *testing.B) {
	cases := []struct {
		name   string
		mime   string
		stream func() *synthStream
	}{
		{"vp8-2.5M-30fps", webrtc.MimeTypeVP8, func() *synthStream { return newVideoStream(2_500_000, 30, 7) }},
		{"vp8-500k-30fps", webrtc.MimeTypeVP8, func() *synthStream { return newVideoStream(500_000, 30, 7) }},
		{"opus-48k", webrtc.MimeTypeOpus, func() *synthStream { return newAudioStream(48_000, 7) }},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			clock, ch := uint32(90000), uint16(0)
			if c.mime == webrtc.MimeTypeOpus {
				clock, ch = 48000, 2
			}
			src := newFakeSource("TR_bench", c.mime, clock, ch)
			rec, err := NewTrackRecorder(src, TrackOptions{Logger: quiet, Dir: b.TempDir(), Name: "bench"})
			if err != nil {
				b.Fatal(err)
			}
			st := c.stream()
			var sink time.Duration
			var payload int64
			b.ReportAllocs()
			b.ResetTimer()
			cpu0 := cpuTime()
			batch := cap(rec.queue) / 2
			for n := 0; n < b.N; {
				pkts := st.next()
				if len(pkts) > b.N-n {
					pkts = pkts[:b.N-n]
				}
				if len(rec.queue)+len(pkts) > batch {
					drain(rec)
				}
				t0 := time.Now()
				for i := range pkts {
					src.write(&pkts[i], 0)
					payload += int64(len(pkts[i].Payload))
				}
				sink += time.Since(t0)
				n += len(pkts)
			}
			drain(rec)
			// let the writer finish the last packet it took
			time.Sleep(time.Millisecond)
			cpu := cpuTime() - cpu0
			b.StopTimer()
			res := rec.Stop()
			if res.Drops > 0 {
				b.Fatalf("%d packets dropped", res.Drops)
			}
			if b.N > 200 && res.Frames == 0 {
				b.Fatalf("no frame written from %d packets", b.N)
			}
			b.SetBytes(payload / int64(b.N))
			perPkt := float64(cpu.Nanoseconds()) / float64(b.N)
			b.ReportMetric(perPkt, "cpu-ns/pkt")
			b.ReportMetric(float64(sink.Nanoseconds())/float64(b.N), "sink-ns/pkt")
			b.ReportMetric(st.packetsPerS, "pkt/s")
			b.ReportMetric(perPkt*st.packetsPerS/1e7, "%core")
		})
	}
}

// BenchmarkRecordingMemory is the heap a room recording holds once media
// flows, measured after a GC: each participant publishes a VP8 (2.5
// Mbit/s, 30 fps) and an Opus track (participants=N), or only one of them
// (video=N, audio=N: the memory per track of that kind). Every track gets 3
// s of media first, so the jitter buffers, packet buffers and file writers
// are in their steady state. The process's RSS is larger by the GC's
// headroom (up to GOGC = 100 %). One op: a recording started, fed and
// stopped.
func BenchmarkRecordingMemory(b *testing.B) {
	for _, c := range []struct {
		name         string
		n            int
		video, audio bool
	}{
		{"participants=1", 1, true, true},
		{"participants=10", 10, true, true},
		{"video=10", 10, true, false},
		{"audio=10", 10, false, true},
	} {
		b.Run(c.name, func(b *testing.B) {
			// Not b.TempDir: a manifest rewrite queued by a track may land
			// just after Stop returns; remove with retries.
			dir, err := os.MkdirTemp("", "recbench")
			if err != nil {
				b.Fatal(err)
			}
			defer removeAllRetry(dir)
			var kinds []string
			if c.video {
				kinds = append(kinds, "video")
			}
			if c.audio {
				kinds = append(kinds, "audio")
			}
			var held, goroutines float64
			for i := 0; i < b.N; i++ {
				h, g := recordRoomOnce(b, filepath.Join(dir, fmt.Sprint(i)), c.n, kinds, 3*time.Second)
				held += h
				goroutines += g
			}
			tracks := float64(c.n * len(kinds))
			b.ReportMetric(held/float64(b.N)/(1<<20), "MiB/recording")
			b.ReportMetric(held/float64(b.N)/tracks/(1<<20), "MiB/track")
			b.ReportMetric(goroutines/float64(b.N)/tracks, "goroutines/track")
		})
	}
}

// recordRoomOnce records n participants, each publishing one track of each
// of kinds, for media time d (fed as fast as the writers take it) and
// returns the heap and goroutines the running recording held at the end.
func recordRoomOnce(b *testing.B, dir string, n int, kinds []string, d time.Duration) (heap, goroutines float64) {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	g0 := runtime.NumGoroutine()

	rr, err := NewRoomRecorder(RoomOptions{Dir: dir, Room: "bench", Logger: quiet})
	if err != nil {
		b.Fatal(err)
	}
	type track struct {
		src *fakeSource
		st  *synthStream
		rec func() *TrackRecorder
		due time.Duration
	}
	var tracks []*track
	for p := 0; p < n; p++ {
		for _, kind := range kinds {
			id := fmt.Sprintf("TR_%s%d", kind, p)
			t := &track{}
			if kind == "video" {
				t.src, t.st = newFakeSource(id, webrtc.MimeTypeVP8, 90000, 0), newVideoStream(2_500_000, 30, uint64(p+1))
			} else {
				t.src, t.st = newFakeSource(id, webrtc.MimeTypeOpus, 48000, 2), newAudioStream(48_000, uint64(p+1))
			}
			pt := room.PublishedTrack{Room: "bench", ParticipantID: fmt.Sprintf("PA_%d", p), ParticipantName: fmt.Sprintf("pub-%d", p),
				Track: protocol.Track{ID: id, Kind: kind, Codec: t.src.codec.MimeType}, Source: t.src}
			if err := rr.AddTrack(pt); err != nil {
				b.Fatal(err)
			}
			t.rec = func() *TrackRecorder {
				rr.mu.Lock()
				defer rr.mu.Unlock()
				return rr.tracks[id].rec
			}
			tracks = append(tracks, t)
		}
	}
	// Interleave the tracks on one media clock.
	for now := time.Duration(0); now < d; now += 5 * time.Millisecond {
		for _, t := range tracks {
			for t.due <= now {
				for i := range t.st.next() {
					t.src.write(&t.st.pkts[i], 0)
				}
				t.due += t.st.interval()
			}
		}
		for _, t := range tracks {
			drain(t.rec())
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	goroutines = float64(runtime.NumGoroutine() - g0)
	man := rr.Stop()
	for _, t := range man.Tracks {
		if t.Drops > 0 || t.Frames == 0 {
			b.Fatalf("track %s: %d frames, %d dropped packets", t.ID, t.Frames, t.Drops)
		}
	}
	// Manifest rewrites queued by the tracks may still run (and hold the
	// recording); wait for them so the next iteration's baseline is clean.
	for deadline := time.Now().Add(2 * time.Second); runtime.NumGoroutine() > g0 && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
	return float64(int64(after.HeapAlloc) - int64(before.HeapAlloc)), goroutines
}

func removeAllRetry(dir string) {
	for i := 0; i < 50; i++ {
		if os.RemoveAll(dir) == nil {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// BenchmarkRecordStop is the CPU time stopping a VP8 track recording takes
// (finalising the file), by the number of packets of the last frame, which
// the jitter buffer still holds at the stop: 1 s of frames of that many
// packets each, then Stop. With exactly two, pion's samplebuilder Flush
// (v4.2.26, with WithMaxTimeDelay) walks its whole 65536-slot ring and
// rescans it at every step: seconds of CPU per track. See "Recording under
// load" in docs/benchmarks.md.
func BenchmarkRecordStop(b *testing.B) {
	for _, n := range []int{1, 2, 3} {
		b.Run(fmt.Sprintf("last-frame-packets=%d", n), func(b *testing.B) {
			var cpu time.Duration
			for i := 0; i < b.N; i++ {
				src := newFakeSource("TR_stop", webrtc.MimeTypeVP8, 90000, 0)
				rec, err := NewTrackRecorder(src, TrackOptions{Logger: quiet, Dir: b.TempDir(), Name: "stop"})
				if err != nil {
					b.Fatal(err)
				}
				st := newVideoStream(500_000, 30, 5)
				st.fixed, st.key = true, n*synthChunk-8
				for f := 0; f < 30; f++ {
					pkts := st.next()
					for j := range pkts {
						src.write(&pkts[j], 0)
					}
					drain(rec)
				}
				time.Sleep(time.Millisecond)
				c0 := cpuTime()
				res := rec.Stop()
				cpu += cpuTime() - c0
				if res.Frames < 29 {
					b.Fatalf("%d frames written, want 30", res.Frames)
				}
			}
			b.ReportMetric(float64(cpu.Microseconds())/1e3/float64(b.N), "cpu-ms/stop")
		})
	}
}

// BenchmarkSampleBuilderFlush is the pion samplebuilder alone, as the
// recorder builds it: ten frames of N packets, then Flush. With N = 2 its
// filled range's head ends one past its tail, so the 65,536-slot ring
// looks full: Flush takes 65,537 steps and, with WithMaxTimeDelay, scans
// the ring at each (tooOld).
func BenchmarkSampleBuilderFlush(b *testing.B) {
	for _, n := range []int{1, 2, 3} {
		b.Run(fmt.Sprintf("packets-per-frame=%d", n), func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				sb := samplebuilder.New(256, &codecs.VP8Packet{}, 90000, samplebuilder.WithRTPHeaders(true),
					samplebuilder.WithMaxTimeDelay(time.Second), samplebuilder.WithPacketReleaseHandler(func(*rtp.Packet) {}))
				seq, ts := uint16(1000), uint32(0)
				for f := 0; f < 10; f++ {
					for p := 0; p < n; p++ {
						payload := []byte{0x00, 1, 2, 3}
						if p == 0 {
							payload[0] = 0x10 // S: start of the frame
						}
						sb.Push(&rtp.Packet{Header: rtp.Header{SequenceNumber: seq, Timestamp: ts, Marker: p == n-1}, Payload: payload})
						seq++
						for sb.Pop() != nil {
						}
					}
					ts += 3000
				}
				sb.Flush()
			}
		})
	}
}
