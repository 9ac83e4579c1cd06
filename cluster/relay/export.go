package relay

import (
	"encoding/binary"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/srtp/v3"
	"github.com/pion/webrtc/v4"
	"github.com/starling-rtc/starling/internal/clock"
	"github.com/starling-rtc/starling/sfu"
)

const maxLayers = sfu.MaxLayers

// Retransmission ring sizes, in packets per layer: a video layer's ring
// holds ~1.2 s of a 2.5 Mbit/s layer (220 packets/s), audio's ~2.5 s. A
// NACK for anything older comes too late to matter on a cluster's network.
const (
	videoSlots  = 256 // power of two
	audioSlots  = 128
	maxResendAt = time.Second
	// A packet is resent at most maxResends times, and once per
	// minResendGap however often the edge asks (its retries may cross a
	// resend on the way).
	maxResends   = 6
	minResendGap = 20 * time.Millisecond
)

// Export sends one published track to one peer node. It is a sink of the
// track (sfu.Sink): the source's read goroutines call WriteRTP, which
// encrypts into the layer's retransmission ring and queues the datagram;
// it never blocks (a full socket queue drops and counts).
type Export struct {
	t     *Transport
	p     *peer
	src   sfu.Source
	base  uint32
	video bool
	mask  atomic.Uint32 // layers sent: allowed & wished
	// levelID is the publisher's audio level extension id (0: none or not
	// known yet; looked up again with each status report).
	levelID atomic.Uint32
	packets atomic.Uint64 // first transmissions
	bytes   atomic.Uint64
	setMu   sync.Mutex // serialises changes of the two below
	allow   uint8      // SetLayers: what the control plane lets cross
	wished  uint8      // the edge's in-band wish: what its sinks want now
	closed  atomic.Bool
	once    sync.Once
	layer   [maxLayers]exportLayer
}

// exportLayer is one layer's stream: its SRTP context and its ring. The
// lock is the layer's read goroutine's against NACK answers.
type exportLayer struct {
	mu      sync.Mutex
	ctx     *srtp.Context
	ring    []slot // allocated at the layer's first packet, then reused
	started bool
	skipped bool    // a packet was not sent (layer off): the next one resumes
	level   [1]byte // the audio level extension's byte, referenced by hdr
	ext     uint64  // extended sequence number of the newest packet
	hdr     rtp.Header
	encHdr  rtp.Header
	packets uint32
	octets  uint32
}

// slot is one sent datagram, kept for retransmission: the slot is the buffer.
type slot struct {
	at      int64 // when it was sent, unix nanos
	resent  int64 // when it was last resent
	n       uint16
	seq     uint16
	valid   bool
	resends uint8
	buf     [slotSize]byte
}

// Export starts sending src's layers (bit i = layer i) to peerNode. The
// edge names the stream by SSRCBase, which the control plane passes to the
// edge's Import. The edge's layer wishes (in-band) change the layers later,
// as does SetLayers.
func (t *Transport) Export(peerNode string, src sfu.Source, layers uint8) (*Export, error) {
	if src == nil {
		return nil, errors.New("relay: nil source")
	}
	if t.isClosed() {
		return nil, ErrClosed
	}
	p := t.peer(peerNode)
	if p == nil {
		return nil, ErrUnknownPeer
	}
	e := &Export{t: t, p: p, src: src, base: t.nextBase.Add(4) - 4, video: src.Kind() == webrtc.RTPCodecTypeVideo}
	if e.base < 4 { // wrapped: skip the control SSRCs
		e.base = t.nextBase.Add(4) - 4
	}
	if !e.video {
		layers = 1
	}
	e.allow, e.wished = layers&(1<<maxLayers-1), 1<<maxLayers-1
	e.mask.Store(uint32(e.allow))
	p.mu.Lock()
	p.exports[e.base] = e
	p.mu.Unlock()
	t.addExport(e)
	e.lookupLevelID()
	src.AddSink(e)
	e.sendStatus()
	return e, nil
}

// SSRCBase names the export's streams: layer i is SSRC base+i.
func (e *Export) SSRCBase() uint32 { return e.base }

// RelayExport marks the export among a track's sinks: a draining node
// keeps a released participant's track while another node imports it
// (room/handover.go).
func (e *Export) RelayExport() {}

// Stats returns the datagrams and bytes sent (first transmissions, all
// layers): what this track costs the relay.
func (e *Export) Stats() (packets, bytes uint64) { return e.packets.Load(), e.bytes.Load() }

// Layers is the mask of layers being sent.
func (e *Export) Layers() uint8 { return uint8(e.mask.Load()) }

// SetLayers chooses the layers allowed to cross (bit i = layer i). The
// edge's in-band wishes narrow them further to what its subscribers want
// now (none yet: all); what is sent is both. A layer turned on gets a
// keyframe request, so the edge can switch to it soon.
func (e *Export) SetLayers(mask uint8) {
	e.setMu.Lock()
	e.allow = mask
	changed := e.applyLocked()
	e.setMu.Unlock()
	if changed {
		e.wantsChanged()
	}
}

// onWish applies the edge's in-band layer wish.
func (e *Export) onWish(mask uint8) {
	if e.closed.Load() {
		return
	}
	e.setMu.Lock()
	e.wished = mask
	changed := e.applyLocked()
	e.setMu.Unlock()
	if changed {
		e.wantsChanged()
	}
}

// wantsNotifier is a source told that what a sink wants changed (the
// origin's sfu.Receiver): it recomputes the layers its publisher is asked
// to send (publishLayers). Without it, an edge's wish changed what crossed
// the relay but never what the publisher sent.
type wantsNotifier interface{ WantsChanged() }

// wantsChanged tells the source that DesiredLayer changed.
func (e *Export) wantsChanged() {
	if n, ok := e.src.(wantsNotifier); ok {
		n.WantsChanged()
	}
}

// applyLocked sets the mask sent and reports whether it changed.
func (e *Export) applyLocked() bool {
	mask := e.allow & e.wished & (1<<maxLayers - 1)
	if !e.video {
		mask &= 1
	}
	old := uint8(e.mask.Swap(uint32(mask)))
	if on := mask &^ old; on != 0 && e.video {
		for i := int8(0); i < maxLayers; i++ {
			if on&(1<<i) != 0 {
				e.src.RequestKeyframe(i)
			}
		}
	}
	if old != mask {
		e.sendStatus()
	}
	return old != mask
}

// DesiredLayer makes the export an sfu.LayerWanter: the origin's dynacast
// keeps the publisher sending what the edge asks for.
func (e *Export) DesiredLayer() int8 {
	m := uint8(e.mask.Load())
	for i := int8(maxLayers - 1); i >= 0; i-- {
		if m&(1<<i) != 0 {
			return i
		}
	}
	return -1
}

// WriteRTP relays one packet of a layer (sfu.Sink). No allocation once the
// layer's ring exists.
func (e *Export) WriteRTP(hdr *rtp.Header, payload []byte, layer int8) error {
	if layer < 0 || layer >= maxLayers || e.closed.Load() {
		return nil
	}
	l := &e.layer[layer]
	l.mu.Lock()
	ext := l.extend(hdr.SequenceNumber)
	if e.mask.Load()&(1<<layer) == 0 {
		l.skipped = l.started
		l.mu.Unlock()
		return nil
	}
	if len(payload) > maxPayload {
		l.mu.Unlock()
		e.t.stats.oversize.Add(1)
		return nil
	}
	if l.ring == nil && !l.init(e) {
		l.mu.Unlock()
		return nil
	}
	ssrc := e.base + uint32(layer)
	// The index is ours, not the context's guess: both sides use the
	// counter the prefix carries (a map write, ~20 ns).
	roc := uint32(ext >> 16)
	l.ctx.SetROC(ssrc, roc)
	l.started = true
	s := &l.ring[int(hdr.SequenceNumber)%len(l.ring)]
	putPrefix(s.buf[:], kindRTP, &e.t.epoch, roc)
	h := &l.hdr
	exts := h.Extensions[:0] // reused: no allocation once it has grown
	*h = rtp.Header{Version: 2, Marker: hdr.Marker, PayloadType: hdr.PayloadType,
		SequenceNumber: hdr.SequenceNumber, Timestamp: hdr.Timestamp, SSRC: ssrc, Extensions: exts}
	if l.skipped {
		// The layer was off: tell the edge the gap before this packet was
		// never sent, so it does not NACK it (authenticated, in the header).
		l.skipped = false
		_ = h.SetExtension(resumeExtID, resumePayload)
	}
	if id := uint8(e.levelID.Load()); id != 0 {
		if v := hdr.GetExtension(id); len(v) > 0 {
			l.level[0] = v[0]
			_ = h.SetExtension(levelExtID, l.level[:])
		}
	}
	n, err := h.MarshalTo(s.buf[prefixLen:])
	if err != nil {
		l.mu.Unlock()
		return nil
	}
	n += copy(s.buf[prefixLen+n:], payload)
	out, err := l.ctx.EncryptRTP(s.buf[prefixLen:prefixLen], s.buf[prefixLen:prefixLen+n], &l.encHdr)
	if err != nil || len(out) == 0 || &out[0] != &s.buf[prefixLen] {
		s.valid = false
		l.mu.Unlock()
		return nil
	}
	s.n, s.seq, s.valid, s.resends, s.resent = uint16(prefixLen+len(out)), hdr.SequenceNumber, true, 0, 0
	s.at = e.src.PacketTime()
	l.packets++
	l.octets += uint32(len(payload))
	to := e.p.addr.Load()
	if e.video {
		// A frame's packets leave together, at its last (sfu/batchhold.go).
		_, _ = e.t.conn.WriteHeld(s.buf[:s.n], *to, hdr.Marker)
	} else {
		_, _ = e.t.conn.WriteToAddrPort(s.buf[:s.n], *to)
	}
	l.mu.Unlock()
	e.packets.Add(1)
	e.bytes.Add(uint64(s.n))
	e.t.stats.packetsOut.Add(1)
	e.t.stats.bytesOut.Add(uint64(s.n))
	return nil
}

// extend tracks the layer's extended sequence number from every packet,
// sent or not, so the rollover counter stays right across a layer
// that was off for minutes. A late packet maps below the newest.
func (l *exportLayer) extend(seq uint16) uint64 {
	if l.ext == 0 {
		l.ext = 1<<16 | uint64(seq) // start at ROC 1: a late first packet maps to ROC 0
		return l.ext
	}
	d := int16(seq - uint16(l.ext))
	if d > 0 {
		l.ext += uint64(d)
		return l.ext
	}
	return l.ext - uint64(-int64(d))
}

func (l *exportLayer) init(e *Export) bool {
	ctx, err := e.p.out.context()
	if err != nil {
		return false
	}
	n := audioSlots
	if e.video {
		n = videoSlots
	}
	l.ctx, l.ring = ctx, make([]slot, n)
	l.hdr.Extensions = make([]rtp.Extension, 0, 2)
	return true
}

// onNACK answers an edge's NACK from the ring: the very datagram sent
// before, byte for byte (same nonce, same ciphertext).
func (e *Export) onNACK(n *rtcp.TransportLayerNack) {
	_, layer := splitSSRC(n.MediaSSRC)
	if layer >= maxLayers || e.closed.Load() {
		return
	}
	l := &e.layer[layer]
	now := clock.Nanos()
	to := e.p.addr.Load()
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.ring == nil {
		return
	}
	for _, pair := range n.Nacks {
		pair.Range(func(seq uint16) bool {
			s := &l.ring[int(seq)%len(l.ring)]
			if !s.valid || s.seq != seq || s.resends >= maxResends || now-s.at > int64(maxResendAt) ||
				now-s.resent < int64(minResendGap) {
				return true
			}
			s.resends++
			s.resent = now
			_, _ = e.t.conn.WriteToAddrPort(s.buf[:s.n], *to)
			e.t.stats.retransmits.Add(1)
			return true
		})
	}
}

// onPLI passes an edge's keyframe request to the source (which throttles
// them: many edges and subscribers make one request per layer per window).
func (e *Export) onPLI(ssrc uint32) {
	_, layer := splitSSRC(ssrc)
	if layer >= maxLayers || e.closed.Load() {
		return
	}
	e.t.stats.plisIn.Add(1)
	e.src.RequestKeyframe(layer)
}

// OnSenderReport forwards the publisher's sender report of a layer (every
// layer, sent or not: the edge maps timestamps between layers through
// them), followed by a clock report: the origin's time now and the
// publisher's clock offset, so the edge maps all of one publisher's tracks
// to one clock (lip sync).
func (e *Export) OnSenderReport(layer int8, ntp uint64, rtpTime uint32) {
	if layer < 0 || layer >= maxLayers || e.closed.Load() {
		return
	}
	l := &e.layer[layer]
	l.mu.Lock()
	packets, octets := l.packets, l.octets
	l.mu.Unlock()
	ssrc := e.base + uint32(layer)
	sr := &rtcp.SenderReport{SSRC: ssrc, NTPTime: ntp, RTPTime: rtpTime, PacketCount: packets, OctetCount: octets}
	data := make([]byte, 20)
	binary.BigEndian.PutUint64(data[0:], uint64(clock.Nanos()))
	if c, ok := e.src.(sfu.ClockSource); ok {
		if off, ok := c.PublisherClockOffset(); ok {
			binary.BigEndian.PutUint64(data[8:], uint64(off))
			data[16] = 1
		}
	}
	e.p.sendRTCP(sr, &rtcp.ApplicationDefined{SubType: appClock, SSRC: ssrc, Name: appName, Data: data})
}

// sendStatus tells the edge the source's present and live layers and the
// layers sent; the timer repeats it, so a lost one heals.
func (e *Export) sendStatus() {
	if e.closed.Load() {
		return
	}
	if e.levelID.Load() == 0 {
		e.lookupLevelID()
	}
	st := [3]uint8{e.src.Layers(), e.src.LiveLayers(), uint8(e.mask.Load())}
	if !e.video {
		st = [3]uint8{1, 1, 1}
	}
	e.p.sendRTCP(&rtcp.ApplicationDefined{SubType: appStatus, SSRC: e.base, Name: appName,
		Data: []byte{st[0], st[1], st[2], 0}})
}

// Close stops the export: it leaves the source's sinks and the transport.
// The source calls it too when the track ends (sfu.Sink).
func (e *Export) Close() {
	e.once.Do(func() {
		e.closed.Store(true)
		e.src.RemoveSink(e)
		e.p.mu.Lock()
		if e.p.exports[e.base] == e {
			delete(e.p.exports, e.base)
		}
		e.p.mu.Unlock()
		e.t.removeExport(e)
	})
}

// levelSource is a source that knows its audio level extension (*sfu.Receiver).
type levelSource interface{ AudioLevelExtensionID() uint8 }

// lookupLevelID finds the publisher's audio level extension, whose levels
// the relay carries so the edge's speaker detection sees them.
func (e *Export) lookupLevelID() {
	if ls, ok := e.src.(levelSource); ok && !e.video {
		e.levelID.Store(uint32(ls.AudioLevelExtensionID()))
	}
}
