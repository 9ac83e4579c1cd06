package sfu

import (
	"encoding/binary"
	"strconv"
	"strings"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/webrtc/v4"
	"github.com/starling-rtc/starling/internal/clock"
)

// Retransmissions answer a subscriber's NACKs from the receiver's packet
// cache (packetcache.go), mapped back through this down track's rewriting:
// the history below remembers, for each sequence number sent, which
// received packet it was and what the rewriting changed. That is ~24 bytes
// per sent packet instead of a copy of the packet per subscriber.

// Retransmission limits. A receiver that keeps asking (pion's NACK generator
// does not notice packets repaired by RTX and asks every 100 ms for ~5 s)
// would otherwise get dozens of copies of each lost packet, and a congested
// subscriber would drown in them.
const (
	// maxResends: a packet is retransmitted at most this many times.
	maxResends = 3
	// maxResendAge: a packet sent longer ago than this is not
	// retransmitted: too late to be played.
	maxResendAge = time.Second
	// minResendGap: repeated requests within this time get one resend.
	minResendGap = 30 * time.Millisecond
	// historyLen is the sent packets remembered (a power of two; ~4.5 s
	// at 220 packets/s).
	historyLen = 1024
)

// sentPacket is what a down track sent under one sequence number.
type sentPacket struct {
	sentAt  int64 // unix nanos (the receiver's clock for the packet)
	lastRTX int64 // unix nanos of the last resend
	ts      uint32
	outSeq  uint16
	inSeq   uint16
	layer   int8
	marker  bool
	valid   bool
	resends uint8
	// The rewritten payload is prefix[:prefixLen] followed by the received
	// payload from byte skip on (a VP8 descriptor may change size).
	prefixLen uint8
	skip      uint8
	prefix    [6]byte
}

// PayloadCache is a source that keeps recently received payloads, so down
// tracks can answer NACKs (*Receiver, and the cluster relay's imports).
type PayloadCache interface {
	CachedPayload(layer int8, seq uint16, dst []byte) (int, bool)
}

// remember records a forwarded video packet. out is the rewritten payload,
// in the received one. Call with d.mu held.
func (d *DownTrack) remember(outSeq, inSeq uint16, ts uint32, marker bool, layer int8, in, out []byte, now int64) {
	if d.history == nil {
		d.history = new([historyLen]sentPacket)
	}
	e := &d.history[outSeq%historyLen]
	*e = sentPacket{sentAt: now, ts: ts, outSeq: outSeq, inSeq: inSeq, layer: layer, marker: marker, valid: true}
	// The VP8 and VP9 rewriting replaces the descriptor only; the rest is
	// the received payload.
	size := -1
	switch d.kind {
	case CodecVP8:
		if desc, ok := parseVP8(in); ok {
			size = desc.size
		}
	case CodecVP9:
		if desc, ok := parseVP9(in); ok {
			size = desc.size
		}
	default:
		return
	}
	if body := len(in) - size; size >= 0 && body >= 0 {
		if head := len(out) - body; head >= 0 && head <= len(e.prefix) {
			e.prefixLen, e.skip = uint8(head), uint8(size)
			copy(e.prefix[:], out[:head])
			return
		}
	}
	e.valid = false // cannot rebuild it: never resend garbage
}

// retransmit queues the packets a NACK names that are still worth sending.
// It runs on the subscriber's RTCP goroutine.
func (d *DownTrack) retransmit(nack *rtcp.TransportLayerNack) {
	cache, ok := d.src().(PayloadCache)
	if !ok {
		return
	}
	now := clock.Nanos()
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.history == nil || d.closed || !d.bound || nack.MediaSSRC != d.ssrc {
		return
	}
	for _, pair := range nack.Nacks {
		pair.Range(func(seq uint16) bool {
			d.resend(cache, seq, now)
			return true
		})
	}
}

// resend queues one retransmission. Call with d.mu held.
func (d *DownTrack) resend(cache PayloadCache, seq uint16, now int64) {
	e := &d.history[seq%historyLen]
	if !e.valid || e.outSeq != seq || now-e.sentAt > int64(maxResendAge) ||
		e.resends >= maxResends || now-e.lastRTX < int64(minResendGap) {
		return
	}
	if d.rtxScratch == nil {
		d.rtxScratch = make([]byte, maxPacket)
	}
	n, ok := cache.CachedPayload(e.layer, e.inSeq, d.rtxScratch)
	if !ok || int(e.skip) > n {
		return
	}
	body := d.rtxScratch[e.skip:n]
	buf := d.queue.getBuf()
	i := 0
	p := queuedPacket{w: d.writer, buf: buf, ts: e.ts, marker: e.marker, repair: true}
	if d.rtxSSRC != 0 {
		// RFC 4588: own SSRC and sequence space, original seq first.
		binary.BigEndian.PutUint16(buf[:], seq)
		i = 2
		p.ssrc, p.pt, p.seq = d.rtxSSRC, d.rtxPT, d.rtxSeq
		d.rtxSeq++
	} else {
		p.ssrc, p.pt, p.seq = d.ssrc, d.pt, seq
	}
	i += copy(buf[i:], e.prefix[:e.prefixLen])
	if i+len(body) > len(buf) {
		d.queue.putBuf(buf)
		return
	}
	i += copy(buf[i:], body)
	p.n = uint16(i)
	if d.enqueue(p) {
		e.resends++
		e.lastRTX = now
		counters.retransmits.Add(1)
	}
}

// rtxPayloadType finds the RTX payload type negotiated for a codec (its
// fmtp "apt=" names the codec's payload type).
func rtxPayloadType(codecs []webrtc.RTPCodecParameters, pt webrtc.PayloadType) (uint8, bool) {
	want := "apt=" + strconv.Itoa(int(pt))
	for _, c := range codecs {
		if !strings.EqualFold(c.MimeType, "video/rtx") {
			continue
		}
		for _, p := range strings.Split(c.SDPFmtpLine, ";") {
			if strings.TrimSpace(p) == want {
				return uint8(c.PayloadType), true
			}
		}
	}
	return 0, false
}
