package loadgen

import (
	"context"
	"encoding/binary"
	"sync/atomic"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
	"github.com/starling-rtc/starling/client"
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

// VideoParams describe one synthetic video stream (a simulcast layer, or
// the only one).
type VideoParams struct {
	Bitrate          int64 // encoder output, bits/s (RTP headers and the stamp come on top)
	FPS              int
	Width, Height    int
	KeyframeInterval time.Duration
}

// Simulcast layers, low to high: rids and shares of the configured video
// bit rate, about what a browser gives 180p, 360p and 720p of a 720p camera
// (each layer half the size of the next).
var (
	SimulcastRIDs   = [3]string{"q", "h", "f"}
	SimulcastShares = [3]float64{0.10, 0.25, 0.65}
)

// layerParams splits p into the simulcast layers, low to high: sizes ¼, ½
// and 1 of p's (even, as encoders scale 4:2:0 video), bit rates by
// SimulcastShares.
func layerParams(p VideoParams) [3]VideoParams {
	var out [3]VideoParams
	for i := range out {
		l := p
		l.Bitrate = int64(float64(p.Bitrate) * SimulcastShares[i])
		if shift := 2 - i; shift > 0 {
			l.Width, l.Height = p.Width>>shift&^1, p.Height>>shift&^1
		}
		out[i] = l
	}
	return out
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

// videoLayer is one encoding of a video sender (a simulcast layer, or the
// only one) with what it sent. Its goroutine is the only writer.
type videoLayer struct {
	rid    string // "" = not simulcast
	params VideoParams

	packets   atomic.Uint64
	bytes     atomic.Uint64
	frames    atomic.Uint64
	keyframes atomic.Uint64
	keyReqs   atomic.Uint64 // keyframe requests (PLI/FIR) from the server for this layer
	skipped   atomic.Uint64 // frames not sent: the server turned the layer off (publishLayers)
	wantKey   atomic.Bool
}

func (l *videoLayer) requestKeyframe() {
	l.keyReqs.Add(1)
	l.wantKey.Store(true)
}

// sender publishes one synthetic track and counts what it sends.
type sender struct {
	track    *webrtc.TrackLocalStaticRTP // audio, or single-layer video
	sim      *client.SimulcastTrack      // simulcast video
	video    bool
	codec    string        // video: CodecVP8 or CodecH264
	layers   []*videoLayer // video: low to high
	serverID string        // the track id the server assigned
	muted    bool          // muted with the protocol (Config.Speakers): not forwarded
	levelID  uint8         // audio: the RFC 6464 extension's id, set with Config.Mix; 0 = not sent

	packets atomic.Uint64 // all layers
	bytes   atomic.Uint64 // RTP bytes (header + payload)
	frames  atomic.Uint64
}

func (s *sender) write(l *videoLayer, pkt *rtp.Packet) {
	var err error
	if s.sim != nil {
		// WriteRTP adds mid and rid to a layer's first packets only; the
		// packet is reused, so drop what the previous one carried.
		pkt.Header.Extension = false
		pkt.Header.Extensions = pkt.Header.Extensions[:0]
		err = s.sim.WriteRTP(l.rid, pkt)
	} else {
		err = s.track.WriteRTP(pkt)
	}
	if err != nil {
		return
	}
	n := uint64(pkt.MarshalSize())
	s.packets.Add(1)
	s.bytes.Add(n)
	if l != nil {
		l.packets.Add(1)
		l.bytes.Add(n)
	}
}

// layerState is one layer's stream state on the sending goroutine.
type layerState struct {
	pkt      *rtp.Packet
	sizer    frameSizer
	tsBase   uint32
	pid      uint16 // VP8 picture id
	frameNum uint   // H.264 frame_num since the last IDR
	params   []byte // H.264: STAP-A with SPS, PPS and the SEI header, sent before each IDR
	scratch  []byte // H.264: packet payloads
	lastKey  time.Time
	active   bool // sent the previous frame (a layer turned back on starts with a keyframe)
}

// runVideo sends frames at the layers' frame rate until ctx ends, every
// layer in turn on each tick (as one encoder does): keyframes when the
// server asks for one on that layer, when a layer is turned back on, and
// every KeyframeInterval; each frame split into ≤1200-byte packets sent
// back to back (as an unpaced encoder does). Layers the server turned off
// (simulcast publishLayers) are skipped.
func (s *sender) runVideo(ctx context.Context, seed uint64) {
	body := make([]byte, maxRTPPacket)
	for i := range body {
		body[i] = byte(i*31 + 7) // never two zero bytes in a row (no H.264 start code emulation)
	}
	states := make([]layerState, len(s.layers))
	for i, l := range s.layers {
		sd := seed + uint64(i)*0x9e3779b97f4a7c15
		st := &states[i]
		st.pkt = &rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: uint16(sd), Timestamp: uint32(sd >> 16)}}
		st.tsBase = st.pkt.Timestamp
		st.pid = uint16(sd>>8) & 0x7fff
		st.sizer = newFrameSizer(l.params, sd)
		if s.codec == CodecH264 {
			st.params = h264ParamSets(l.params.Width, l.params.Height)
			st.scratch = make([]byte, maxRTPPacket)
		}
	}
	p := s.layers[0].params
	interval := time.Duration(float64(time.Second) / float64(max(1, p.FPS)))
	tick := time.NewTicker(interval)
	defer tick.Stop()
	start := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		now := time.Now()
		for i, l := range s.layers {
			st := &states[i]
			if s.sim != nil && !s.sim.Active(l.rid) {
				l.skipped.Add(1)
				st.active = false
				continue
			}
			key := l.wantKey.Swap(false) || !st.active || now.Sub(st.lastKey) >= p.KeyframeInterval
			st.active = true
			if key {
				st.lastKey = now
				l.keyframes.Add(1)
			}
			l.frames.Add(1)
			s.frames.Add(1)
			// The RTP clock follows the wall clock, so late ticks keep time right.
			st.pkt.Timestamp = st.tsBase + uint32(now.Sub(start)*90/time.Millisecond)
			size := st.sizer.next(key)
			if s.codec == CodecH264 {
				s.sendH264(l, st, body, key, size)
			} else {
				s.sendVP8(l, st, body, key, size)
			}
		}
	}
}

// sendVP8 sends one frame of size bytes.
func (s *sender) sendVP8(l *videoLayer, st *layerState, buf []byte, key bool, size int) {
	parts := vp8Packets(size)
	for part := 0; part < parts; part++ {
		st.pkt.Payload = buildVP8(buf, st.pid, size, part, parts, key, l.params.Width, l.params.Height, monoNow())
		st.pkt.Marker = part == parts-1
		s.write(l, st.pkt)
		st.pkt.SequenceNumber++
	}
	st.pid = (st.pid + 1) & 0x7fff
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
	if s.levelID != 0 {
		// -20 dBov with voice activity: a talker the mixer ranks. The
		// payload is not real speech, but it decodes (CELT reads any bits).
		_ = pkt.Header.SetExtension(s.levelID, []byte{0x80 | 20})
	}
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		putStamp(buf, monoNow())
		s.write(nil, pkt)
		s.frames.Add(1)
		pkt.SequenceNumber++
		pkt.Timestamp += 960
	}
}
