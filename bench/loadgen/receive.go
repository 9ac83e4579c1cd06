package loadgen

import (
	"math"
	"sync/atomic"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// stream is one track as one subscriber receives it. Its reader goroutine is
// the only writer; the counters are atomic so progress and snapshots can
// read them at any time.
type stream struct {
	trackID string
	video   bool
	codec   string // video: CodecVP8, CodecH264, or "" (sizes not read)
	mix     bool   // the server's audio mix: re-encoded, no send stamps

	packets  atomic.Uint64
	bytes    atomic.Uint64 // RTP bytes as received (after SRTP decryption)
	expected atomic.Uint64 // highest extended sequence number - first + 1
	bad      atomic.Uint64 // unparsable packets
	padding  atomic.Uint64 // padding only (the server's bandwidth probes)
	// unstamped: media packets without a send stamp, counted as such: a
	// difference of the counters above, read while a packet was between
	// them, found 1-2 under -race that were stamped.
	unstamped atomic.Uint64
	firstAt   atomic.Int64 // monoNow of the first packet; 0 = none yet
	delay     Histogram    // send → receive, from the payload stamps
	// inWindow counts stamped packets sent inside the measurement window,
	// whenever they arrive: delivery is judged by what was sent in the
	// window, so a forwarding delay that grows during it (a busy machine)
	// does not look like loss.
	inWindow atomic.Uint64
	win      *window

	// Video layers, from the sizes keyframes carry: each media packet
	// counts for the layer of the last keyframe before it (the SFU
	// switches layers at keyframes); slot maxLayerSlots is "before the
	// first keyframe with a size".
	layerSize [maxLayerSlots]atomic.Uint32 // width<<16 | height; 0 = free
	layerPkts [maxLayerSlots + 1]atomic.Uint64
	curLayer  atomic.Int32  // slot of the last keyframe, -1 = none yet
	switches  atomic.Uint64 // keyframes whose size differs from the previous one
}

// window is the measurement window in monoNow time; before it starts,
// start is in the far future.
type window struct{ start, end atomic.Int64 }

func newWindow() *window {
	w := &window{}
	w.start.Store(math.MaxInt64)
	w.end.Store(math.MaxInt64)
	return w
}

func (w *window) holds(sent int64) bool {
	return w != nil && sent >= w.start.Load() && sent < w.end.Load()
}

// maxLayerSlots bounds the distinct sizes a stream tracks; more land in the last.
const maxLayerSlots = 4

func newStream(trackID string, video bool, codec string) *stream {
	s := &stream{trackID: trackID, video: video, codec: codec}
	s.curLayer.Store(-1)
	return s
}

// layerSlot returns the slot of a size, taking a free one for a new size.
// Only the reader goroutine calls it.
func (s *stream) layerSlot(w, h int) int {
	key := uint32(w)<<16 | uint32(h)
	for i := range s.layerSize {
		switch s.layerSize[i].Load() {
		case key:
			return i
		case 0:
			s.layerSize[i].Store(key)
			return i
		}
	}
	return maxLayerSlots - 1
}

// frameSize returns the size a keyframe's first packet carries.
func frameSize(codec string, p []byte, scratch *[]byte) (w, h int, ok bool) {
	switch codec {
	case CodecVP8:
		return vp8FrameSize(p)
	case CodecH264:
		return h264FrameSize(p, scratch)
	}
	return 0, 0, false
}

// vp8FrameSize reads a VP8 keyframe's size (RFC 7741 payload descriptor,
// whatever optional fields the SFU's rewrite left, then RFC 6386's frame
// tag, start code and 14-bit dimensions).
func vp8FrameSize(p []byte) (w, h int, ok bool) {
	if len(p) < 1 || p[0]&0x10 == 0 || p[0]&0x07 != 0 { // S, partition 0
		return 0, 0, false
	}
	i := 1
	if p[0]&0x80 != 0 { // X
		if len(p) < 2 {
			return 0, 0, false
		}
		x := p[1]
		i++
		if x&0x80 != 0 { // I: picture id, 7 or 15 bits
			if len(p) <= i {
				return 0, 0, false
			}
			if p[i]&0x80 != 0 {
				i++
			}
			i++
		}
		if x&0x40 != 0 { // L: TL0PICIDX
			i++
		}
		if x&0x30 != 0 { // T or K: TID/Y/KEYIDX
			i++
		}
	}
	f := p[min(i, len(p)):]
	if len(f) < 10 || f[0]&0x01 != 0 || f[3] != 0x9d || f[4] != 0x01 || f[5] != 0x2a {
		return 0, 0, false
	}
	w = int(uint16(f[6])|uint16(f[7])<<8) & 0x3fff
	h = int(uint16(f[8])|uint16(f[9])<<8) & 0x3fff
	return w, h, w > 0 && h > 0
}

// seqTracker extends 16-bit RTP sequence numbers and counts the span seen.
type seqTracker struct {
	started     bool
	first, high uint64
}

// push records seq and returns how many packets the span from the first
// sequence number to the highest one holds (received or lost).
func (t *seqTracker) push(seq uint16) uint64 {
	if !t.started {
		t.started = true
		t.first = 1<<32 + uint64(seq) // room below for reordered first packets
		t.high = t.first
		return 1
	}
	ext := uint64(int64(t.high) + int64(int16(seq-uint16(t.high))))
	if ext > t.high {
		t.high = ext
	}
	if ext < t.first {
		t.first = ext
	}
	return t.high - t.first + 1
}

// rtpPacket is the part of a received RTP packet the reader looks at.
type rtpPacket struct {
	seq     uint16
	payload []byte
}

// parseRTP parses the header into hdr (reused, no allocation) and returns
// the sequence number and the payload without padding.
func parseRTP(hdr *rtp.Header, b []byte) (rtpPacket, bool) {
	hl, err := hdr.Unmarshal(b)
	if err != nil {
		return rtpPacket{}, false
	}
	end := len(b)
	if hdr.Padding {
		pad := int(b[end-1])
		if pad == 0 || hl+pad > end {
			return rtpPacket{}, false
		}
		end -= pad
	}
	return rtpPacket{seq: hdr.SequenceNumber, payload: b[hl:end]}, true
}

// read consumes the track until it ends: one reused buffer and header, no
// allocation per packet.
func (s *stream) read(t *webrtc.TrackRemote) {
	buf := make([]byte, 1500)
	var hdr rtp.Header
	var seqs seqTracker
	var scratch []byte
	for {
		n, _, err := t.Read(buf)
		if err != nil {
			return
		}
		now := monoNow()
		p, ok := parseRTP(&hdr, buf[:n])
		if !ok {
			s.bad.Add(1)
			continue
		}
		if s.firstAt.Load() == 0 {
			s.firstAt.Store(now)
		}
		s.expected.Store(seqs.push(p.seq))
		s.packets.Add(1)
		s.bytes.Add(uint64(n))
		if sent, ok := readStamp(p.payload); ok {
			s.delay.Record(time.Duration(now - sent))
			if s.win.holds(sent) {
				s.inWindow.Add(1)
			}
		} else if len(p.payload) == 0 {
			s.padding.Add(1)
			continue
		} else {
			s.unstamped.Add(1)
		}
		if s.codec != "" {
			cur := s.curLayer.Load()
			if w, h, ok := frameSize(s.codec, p.payload, &scratch); ok {
				slot := int32(s.layerSlot(w, h))
				if cur >= 0 && slot != cur {
					s.switches.Add(1)
				}
				cur = slot
				s.curLayer.Store(cur)
			}
			if cur < 0 {
				cur = maxLayerSlots
			}
			s.layerPkts[cur].Add(1)
		}
	}
}

// drainRTCP reads the receiver's RTCP (the server's sender reports) so
// pion's buffers never fill and its interceptors see it.
func drainRTCP(r *webrtc.RTPReceiver) {
	for {
		if _, _, err := r.ReadRTCP(); err != nil {
			return
		}
	}
}

// streamSnap is a stream's counters at one instant.
type streamSnap struct {
	packets, bytes, expected, padding, unstamped uint64
	delay                                        HistSnapshot

	layerSize [maxLayerSlots]uint32
	layerPkts [maxLayerSlots + 1]uint64
	curLayer  int32
	switches  uint64
}

func (s *stream) snapshot() streamSnap {
	ss := streamSnap{
		packets: s.packets.Load(), bytes: s.bytes.Load(), expected: s.expected.Load(),
		padding: s.padding.Load(), unstamped: s.unstamped.Load(), delay: s.delay.Snapshot(),
		curLayer: s.curLayer.Load(), switches: s.switches.Load(),
	}
	for i := range ss.layerSize {
		ss.layerSize[i] = s.layerSize[i].Load()
	}
	for i := range ss.layerPkts {
		ss.layerPkts[i] = s.layerPkts[i].Load()
	}
	return ss
}
