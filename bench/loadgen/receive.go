package loadgen

import (
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

	packets  atomic.Uint64
	bytes    atomic.Uint64 // RTP bytes as received (after SRTP decryption)
	expected atomic.Uint64 // highest extended sequence number - first + 1
	bad      atomic.Uint64 // unparsable packets
	padding  atomic.Uint64 // padding only (the server's bandwidth probes)
	firstAt  atomic.Int64  // monoNow of the first packet; 0 = none yet
	delay    Histogram     // send → receive, from the payload stamps
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
		} else if len(p.payload) == 0 {
			s.padding.Add(1)
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
	packets, bytes, expected, padding uint64
	delay                             HistSnapshot
}

func (s *stream) snapshot() streamSnap {
	return streamSnap{
		packets: s.packets.Load(), bytes: s.bytes.Load(), expected: s.expected.Load(),
		padding: s.padding.Load(), delay: s.delay.Snapshot(),
	}
}
