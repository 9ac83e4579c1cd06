package loadgen

import (
	"context"
	"encoding/binary"
	"sync/atomic"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// Every synthetic payload ends with a stamp: 4 magic bytes and the send time
// in nanoseconds on the process's monotonic clock. Publishers and
// subscribers live in the same process, so the difference is the one-way
// delay through the SFU. The stamp sits after the codec headers (at the very
// end of the payload), so it survives the SFU rewriting the VP8 descriptor.
const stampLen = 12

var (
	stampMagic = [4]byte{'S', 'L', 'G', '1'}
	epoch      = time.Now()
)

// monoNow is nanoseconds since the process's epoch, read from the monotonic clock.
func monoNow() int64 { return int64(time.Since(epoch)) }

func putStamp(payload []byte, ns int64) {
	t := payload[len(payload)-stampLen:]
	copy(t, stampMagic[:])
	binary.BigEndian.PutUint64(t[4:], uint64(ns))
}

// readStamp returns the send time stamped at the end of payload.
func readStamp(payload []byte) (int64, bool) {
	if len(payload) < stampLen {
		return 0, false
	}
	t := payload[len(payload)-stampLen:]
	if [4]byte(t[:4]) != stampMagic {
		return 0, false
	}
	return int64(binary.BigEndian.Uint64(t[4:])), true
}

// Packet size limits: an RTP packet (12-byte header, no extensions) is at
// most maxRTPPacket bytes, like browsers' ~1200-byte payloads.
const (
	maxRTPPacket = 1200
	rtpHeaderLen = 12
	vp8DescLen   = 4 // X=1, I=1, 15-bit picture id
	// vp8Chunk is the frame data one packet carries.
	vp8Chunk = maxRTPPacket - rtpHeaderLen - vp8DescLen - stampLen
)

// VideoParams describe the synthetic VP8 stream.
type VideoParams struct {
	Bitrate          int64 // encoder output, bits/s (RTP headers and the stamp come on top)
	FPS              int
	Width, Height    int
	KeyframeInterval time.Duration
}

// frameSizer picks frame sizes whose long-run average matches the bit rate:
// keyframes about 4× an average frame, delta frames ±25% around the rest.
type frameSizer struct {
	key, delta int
	rng        uint64
}

func newFrameSizer(p VideoParams, seed uint64) frameSizer {
	avg := int(p.Bitrate / 8 / int64(max(1, p.FPS)))
	perKey := int(p.KeyframeInterval.Seconds() * float64(p.FPS))
	key := 4 * avg
	delta := avg
	if perKey > 1 {
		delta = (perKey*avg - key) / (perKey - 1)
	}
	return frameSizer{key: max(key, 64), delta: max(delta, avg/4, 64), rng: seed | 1}
}

func (f *frameSizer) next(key bool) int {
	if key {
		return f.key
	}
	// xorshift64: cheap, deterministic, no allocation.
	f.rng ^= f.rng << 13
	f.rng ^= f.rng >> 7
	f.rng ^= f.rng << 17
	jitter := int(f.rng%51) - 25 // -25..25 %
	return max(64, f.delta+f.delta*jitter/100)
}

// vp8Packets is how many packets carry a frame of size bytes.
func vp8Packets(size int) int { return (size + vp8Chunk - 1) / vp8Chunk }

// buildVP8 writes packet part (of parts) of a frame of size bytes into buf
// and returns the payload: a VP8 payload descriptor with a 15-bit picture
// id; on the first packet the VP8 frame tag, and for a keyframe the start
// code and the dimensions; filler; the stamp. Chunks are balanced like
// libwebrtc's packetizer.
func buildVP8(buf []byte, pid uint16, size, part, parts int, key bool, width, height int, ns int64) []byte {
	chunk := size / parts
	if part < size%parts {
		chunk++
	}
	n := vp8DescLen + chunk + stampLen
	p := buf[:n]
	p[0] = 0x80 // X
	if part == 0 {
		p[0] |= 0x10 // S: start of partition 0
	}
	p[1] = 0x80                     // I: picture id present
	p[2] = 0x80 | byte(pid>>8)&0x7f // M: 15-bit picture id
	p[3] = byte(pid)
	if part == 0 {
		// Frame tag (RFC 6386 9.1): P (0 = keyframe), version 0, show_frame,
		// 19-bit first partition size; little endian.
		first := uint32(min(size/4, 1<<19-1))
		tag := first<<5 | 1<<4
		if !key {
			tag |= 1
		}
		p[4], p[5], p[6] = byte(tag), byte(tag>>8), byte(tag>>16)
		if key {
			p[7], p[8], p[9] = 0x9d, 0x01, 0x2a
			binary.LittleEndian.PutUint16(p[10:], uint16(width)&0x3fff)
			binary.LittleEndian.PutUint16(p[12:], uint16(height)&0x3fff)
		}
	}
	putStamp(p, ns)
	return p
}

// sender publishes one synthetic track and counts what it sends.
type sender struct {
	track    *webrtc.TrackLocalStaticRTP
	video    bool
	serverID string // the track id the server assigned

	packets   atomic.Uint64
	bytes     atomic.Uint64 // RTP bytes (header + payload)
	frames    atomic.Uint64
	keyframes atomic.Uint64
	keyReqs   atomic.Uint64 // keyframe requests (PLI/FIR) from the server
	wantKey   atomic.Bool
}

func (s *sender) requestKeyframe() {
	s.keyReqs.Add(1)
	s.wantKey.Store(true)
}

func (s *sender) write(pkt *rtp.Packet) {
	if s.track.WriteRTP(pkt) == nil {
		s.packets.Add(1)
		s.bytes.Add(uint64(rtpHeaderLen + len(pkt.Payload)))
	}
}

// runVideo sends frames at p.FPS until ctx ends: keyframes when asked and
// every p.KeyframeInterval, each frame split into ≤1200-byte packets sent
// back to back (as an unpaced encoder does).
func (s *sender) runVideo(ctx context.Context, p VideoParams, seed uint64) {
	sizer := newFrameSizer(p, seed)
	buf := make([]byte, maxRTPPacket)
	for i := range buf {
		buf[i] = byte(i*31 + 7)
	}
	pkt := &rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: uint16(seed), Timestamp: uint32(seed >> 16)}}
	pid := uint16(seed>>8) & 0x7fff
	tsBase := pkt.Timestamp
	interval := time.Duration(float64(time.Second) / float64(max(1, p.FPS)))
	tick := time.NewTicker(interval)
	defer tick.Stop()
	start := time.Now()
	var lastKey time.Time
	s.wantKey.Store(true)
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		now := time.Now()
		key := s.wantKey.Swap(false) || now.Sub(lastKey) >= p.KeyframeInterval
		if key {
			lastKey = now
			s.keyframes.Add(1)
		}
		s.frames.Add(1)
		// The RTP clock follows the wall clock, so late ticks keep time right.
		pkt.Timestamp = tsBase + uint32(now.Sub(start)*90/time.Millisecond)
		size := sizer.next(key)
		parts := vp8Packets(size)
		for part := 0; part < parts; part++ {
			pkt.Payload = buildVP8(buf, pid, size, part, parts, key, p.Width, p.Height, monoNow())
			pkt.Marker = part == parts-1
			s.write(pkt)
			pkt.SequenceNumber++
		}
		pid = (pid + 1) & 0x7fff
	}
}

// runAudio sends one Opus packet every 20 ms until ctx ends.
func (s *sender) runAudio(ctx context.Context, bitrate int64, seed uint64) {
	size := max(int(bitrate/8/50), 1+stampLen+4)
	buf := make([]byte, size)
	for i := range buf {
		buf[i] = byte(i*17 + 3)
	}
	buf[0] = 0xfc // TOC: config 31 (CELT-only, fullband, 20 ms), stereo, one frame
	pkt := &rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: uint16(seed), Timestamp: uint32(seed >> 16)}, Payload: buf}
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		putStamp(buf, monoNow())
		s.write(pkt)
		s.frames.Add(1)
		pkt.SequenceNumber++
		pkt.Timestamp += 960
	}
}
