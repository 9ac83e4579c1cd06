package sfu

import (
	"errors"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
	"github.com/starling-rtc/starling/internal/clock"
)

// DownTrack is one subscription: a published track as sent to one
// subscriber. It rewrites SSRC, sequence numbers and timestamps so the
// subscriber sees one continuous stream across pauses and layer switches, and
// it only starts or switches layers on a keyframe.
type DownTrack struct {
	id, streamID string
	srcp         atomic.Pointer[sourceRef] // the source forwarded; changed by Handover (handover.go)
	codec        webrtc.RTPCodecParameters
	kind         CodecKind
	video        bool

	mu     sync.Mutex
	writer webrtc.TrackLocalWriter
	ssrc   uint32
	pt     uint8
	bound  bool
	closed bool
	// unsupported: the subscriber's connection cannot carry the track's
	// codec (see Bind): nothing is forwarded, the subscriber sees a silent
	// track, and the negotiation of its other tracks goes on.
	unsupported bool
	paused      bool
	current     int8 // layer forwarded now; -1 = waiting for a keyframe
	target      int8 // layer wanted
	munger      *Munger
	vp8         VP8Munger
	vp9         VP9Munger
	queue       sendQueue // munged packets waiting for the writer goroutine (sendqueue.go)
	// NACK answers (retransmit.go): what was sent, and the RTX stream.
	history    *[historyLen]sentPacket
	rtxScratch []byte
	rtxSSRC    uint32
	rtxPT      uint8
	rtxSeq     uint16
	reception  ReceptionStats // the subscriber's latest receiver report (reception.go)
	heard      bool           // a receiver report said a packet of this track arrived (watchdog.go)
	tsIn       uint32         // input and output timestamps of the last forwarded packet:
	tsOut      uint32         // their difference is the current rewriting offset
	haveTS     bool
	tsLayer    int8    // the layer tsIn belongs to
	sr         srState // the publisher's sender reports (rtcp.go)
	red        redMode // RED audio: forwarded as is, with its block type rewritten, or unwrapped (red.go)
	redPT      uint8
	redbuf     []byte
	sender     *webrtc.RTPSender
	rtcpDone   chan struct{}
	// plis is the engine's count of keyframe requests read, set by the
	// subscriber before the RTCP reader starts (nil: none, as in tests).
	plis *atomic.Uint64

	packets atomic.Uint64
	bytes   atomic.Uint64
	dropped atomic.Uint64 // packets due to the subscriber whose write failed
	onBind  func()
	// Layer selection inputs and the last result (see selector.go).
	capLayer, bwLayer int8
	bwPaused          bool // the allocator gave this track no bandwidth
	lastSel           int8
	lastReason        string
	selected          bool
	lastAsk           int64              // unix nanos of this down track's last keyframe request
	fallback          *fallbackEstimator // the subscriber's estimator without TWCC; nil = none
	// connected is the subscriber transport's state; nil (tests) = always up.
	connected *atomic.Bool
	// frameOpen: the newest packet forwarded began or continued a frame
	// without ending it (no marker bit), at frameOpenAt (clock.Nanos). Padding waits for the frame's end (downtrack_pad.go).
	frameOpen   bool
	frameOpenAt int64
	stall       stallWatch // watchdog.go
	ho          *handover  // a change of source under way (handover.go); under mu
}

// setTransport links the down track to its connection's DTLS state: before
// it is up, pion drops writes silently, so nothing is forwarded.
func (d *DownTrack) setTransport(connected *atomic.Bool) {
	d.mu.Lock()
	d.connected = connected
	d.mu.Unlock()
}

var errUnsupportedCodec = errors.New("subscriber does not support the track's codec")

// NewDownTrack makes a down track of source for the participant streamID.
func NewDownTrack(source Source, streamID string) *DownTrack {
	codec := source.Codec()
	d := &DownTrack{
		id: source.ID(), streamID: streamID, codec: codec,
		kind: CodecKindFromMime(codec.MimeType), video: source.Kind() == webrtc.RTPCodecTypeVideo,
		current: -1, target: MaxLayers - 1,
		capLayer: MaxLayers - 1, bwLayer: MaxLayers - 1,
	}
	if !d.video {
		d.target, d.current = 0, 0
	}
	d.srcp.Store(&sourceRef{source})
	return d
}

// ID is the track id, StreamID the publishing participant: together they
// form the SDP msid the subscriber maps to a Track.
func (d *DownTrack) ID() string { return d.id }

// RID is empty: a subscriber always gets a single stream.
func (d *DownTrack) RID() string { return "" }

// StreamID is the publisher's participant id.
func (d *DownTrack) StreamID() string { return d.streamID }

// Kind is audio or video.
func (d *DownTrack) Kind() webrtc.RTPCodecType { return d.src().Kind() }

// Source is the published track this down track forwards (during a
// Handover, the one it goes over to).
func (d *DownTrack) Source() Source { return d.src() }

// OnBind sets a callback run when negotiation completes and media can flow.
func (d *DownTrack) OnBind(f func()) { d.onBind = f }

// Bind picks the source codec among those the subscriber accepted.
func (d *DownTrack) Bind(ctx webrtc.TrackLocalContext) (webrtc.RTPCodecParameters, error) {
	var chosen *webrtc.RTPCodecParameters
	for _, c := range ctx.CodecParameters() {
		if !strings.EqualFold(c.MimeType, d.codec.MimeType) {
			continue
		}
		if chosen == nil || fmtpEqual(c.SDPFmtpLine, d.codec.SDPFmtpLine) {
			c := c
			chosen = &c
		}
	}
	red, redPT := redFor(d.codec, chosen, ctx.CodecParameters())
	if red == redUnwrap {
		chosen = &webrtc.RTPCodecParameters{}
		*chosen = redOpus(ctx.CodecParameters())
	}
	unsupported := false
	if chosen == nil {
		// pion offers a subscriber connection only the codecs of its first
		// negotiation of a kind (its MediaEngine keeps them), so a track in
		// a codec published later (an H.264 camera joining VP8 ones) can
		// be answered in another codec. Failing here would fail the whole
		// answer: the offer would stay unanswered and the subscriber be
		// ended at the negotiation timeout, with all its other tracks.
		// Bind to what was negotiated and forward nothing instead.
		if chosen = placeholderCodec(ctx.CodecParameters()); chosen == nil {
			return webrtc.RTPCodecParameters{}, errUnsupportedCodec
		}
		unsupported = true
		counters.unsupportedDownTracks.Add(1)
	}
	d.mu.Lock()
	d.unsupported = unsupported
	d.red, d.redPT = red, redPT
	if red == redRewrite && d.redbuf == nil {
		d.redbuf = make([]byte, maxPacket)
	}
	d.writer = ctx.WriteStream()
	if old := d.ssrc; old != 0 && old != uint32(ctx.SSRC()) {
		unregisterDownTrack(d, old)
	}
	d.ssrc = uint32(ctx.SSRC())
	registerDownTrack(d, d.ssrc)
	d.pt = uint8(chosen.PayloadType)
	d.rtxSSRC, d.rtxPT = 0, 0
	if pt, ok := rtxPayloadType(ctx.CodecParameters(), chosen.PayloadType); ok && ctx.SSRCRetransmission() != 0 {
		d.rtxSSRC, d.rtxPT = uint32(ctx.SSRCRetransmission()), pt
		if d.rtxSeq == 0 {
			d.rtxSeq = initialSeq() // below 2^15: see initialseq.go
		}
	}
	d.bound = true
	if d.munger == nil {
		d.munger = NewMunger(d.codec.ClockRate, initialSeq(), randUint32()) // below 2^15: see initialseq.go
	}
	d.mu.Unlock()
	if d.video && !unsupported {
		d.askKeyframe(d.Target())
	}
	if d.onBind != nil {
		d.onBind()
	}
	return *chosen, nil
}

// Unbind stops writing; the transceiver is gone or stopped.
func (d *DownTrack) Unbind(webrtc.TrackLocalContext) error {
	d.mu.Lock()
	d.bound = false
	ssrc := d.ssrc
	d.mu.Unlock()
	unregisterDownTrack(d, ssrc)
	return nil
}

// WriteRTP forwards one packet of the given layer if it is the one this
// subscriber gets. Runs on the receiver's goroutine for that layer.
func (d *DownTrack) WriteRTP(in *rtp.Header, payload []byte, layer int8) error {
	return d.write(in, payload, layer, nil)
}

// write forwards a packet of the current source, or, with from set, of the
// source a Handover leaves (handover.go).
func (d *DownTrack) write(in *rtp.Header, payload []byte, layer int8, from *handoverSink) error {
	d.mu.Lock()
	if !d.bound || d.paused || d.bwPaused || d.closed || d.unsupported || (d.connected != nil && !d.connected.Load()) {
		d.mu.Unlock()
		return nil
	}
	src := d.src()
	if d.ho != nil || from != nil {
		var ok, ask bool
		if src, ok, ask = d.handoverLocked(in, layer, payload, from); !ok {
			d.mu.Unlock()
			if ask {
				src.RequestKeyframe(layer)
			}
			return nil
		}
	}
	if layer != d.current {
		// Only a keyframe on the wanted layer starts or switches the stream.
		if layer != d.target || !IsKeyframeStart(d.kind, payload) {
			ask := false
			if layer == d.target {
				ask = d.keyframeDue()
			}
			d.mu.Unlock()
			if ask {
				// Still waiting: the last request or its answer may have
				// been lost, and browsers send keyframes only when asked.
				src.RequestKeyframe(layer)
			}
			return nil
		}
		if d.current >= 0 {
			counters.layerSwitches.Add(1)
		}
		d.current = layer
		d.munger.Switch()
		if d.haveTS {
			if ts, ok := d.sr.alignTS(d.tsLayer, layer, in.Timestamp, d.tsIn, d.tsOut, d.codec.ClockRate); ok {
				d.munger.HintNextTS(ts)
			}
		}
		d.vp8.Switch()
		d.vp9.Switch()
		started := d.forwardLocked(in.SequenceNumber, in.Timestamp, in.Marker, payload, layer, src)
		if started && d.ho == nil && from == nil {
			d.replayLate(src, in.SequenceNumber, in.Timestamp, layer)
		}
		d.mu.Unlock()
		return nil
	}
	d.forwardLocked(in.SequenceNumber, in.Timestamp, in.Marker, payload, layer, src)
	d.mu.Unlock()
	return nil
}

// forwardLocked munges one packet of the layer forwarded and queues it; it
// reports whether the packet took its output slot (a full queue may still
// drop it: the subscriber NACKs it). Call with d.mu held.
func (d *DownTrack) forwardLocked(inSeq uint16, inTS uint32, marker bool, payload []byte, layer int8, src Source) bool {
	newest, _, wasStarted := d.munger.Last()
	seq, ts, ok := d.munger.Forward(inSeq, inTS, src.PacketTime())
	if !ok {
		return false
	}
	d.tsIn, d.tsOut, d.haveTS, d.tsLayer = inTS, ts, true, layer // the current ts rewriting, for sender reports
	if d.red != redNone {
		var ok bool
		if payload, ok = d.redPayload(payload); !ok {
			d.munger.Drop(inSeq)
			return false
		}
	}
	if len(payload) > maxPacket {
		d.munger.Drop(inSeq)
		return false
	}
	buf := d.queue.getBuf()
	n := len(payload)
	var err error
	switch d.kind {
	case CodecVP8:
		n, err = d.vp8.Rewrite(buf[:], payload)
	case CodecVP9:
		n, err = d.vp9.Rewrite(buf[:], payload)
	case CodecH264:
		if !ValidH264Payload(payload) {
			err = errBadPayload
			break
		}
		copy(buf[:], payload)
	default:
		copy(buf[:], payload)
	}
	if err != nil {
		d.queue.putBuf(buf)
		d.munger.Drop(inSeq)
		return false
	}
	// Queued under the lock: at a switch the old and new layers' goroutines
	// would otherwise race and reorder packets on the wire.
	if d.video {
		// Before the packet is queued: from then on the buffer is the
		// writer's. A packet the queue drops stays in the history, so a NACK
		// can still bring it.
		d.remember(seq, inSeq, ts, marker, layer, payload, buf[:n], src.PacketTime())
	}
	if d.video && (!wasStarted || int16(seq-newest) > 0) {
		// The newest output (a late repair is not): a frame is open
		// until its marker bit, and padding waits for it.
		if !marker && !d.frameOpen {
			d.frameOpenAt = clock.Nanos() // once a frame, not a packet
		}
		d.frameOpen = !marker
	}
	p := queuedPacket{w: d.writer, buf: buf, n: uint16(n), seq: seq, ts: ts, ssrc: d.ssrc, pt: d.pt, marker: marker}
	if d.video && d.rtxSSRC != 0 && int16(newest-seq) >= lateOnRTX && d.sendLateOnRTX(&p, src.PacketTime()) {
		d.enqueue(p) // a late repair (laterepair.go): nothing to hold it for
		return true
	}
	if d.video && !marker {
		d.enqueueHeld(p) // the frame's last packet wakes the writer (sendqueue.go)
	} else {
		d.enqueue(p)
	}
	return true
}

// OnSenderReport keeps the publisher's sender report of a layer: this down
// track's own reports map through it (rtcp.go).
func (d *DownTrack) OnSenderReport(layer int8, ntp uint64, rtpTime uint32) {
	d.mu.Lock()
	next := d.ho != nil // from the source a Handover goes over to: not the stream forwarded yet
	d.mu.Unlock()
	if !next {
		d.sr.onSenderReport(layer, ntp, rtpTime, clock.Nanos())
	}
}

// SetPaused stops or resumes forwarding. Resuming waits for a keyframe so the
// decoder restarts cleanly, and asks the publisher for one.
func (d *DownTrack) SetPaused(paused bool) {
	d.mu.Lock()
	changed := d.paused != paused
	d.paused = paused
	if changed && !paused && d.video {
		d.current = -1
	}
	target := d.target
	d.mu.Unlock()
	if changed && !paused && d.video {
		d.askKeyframe(target)
	}
}

// Paused reports whether the subscriber paused this track.
func (d *DownTrack) Paused() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.paused
}

// SetTarget sets the layer wanted; the switch happens at its next keyframe.
func (d *DownTrack) SetTarget(layer int8) {
	if !d.video || layer < 0 || layer >= MaxLayers {
		return
	}
	d.mu.Lock()
	changed := d.target != layer
	d.target = layer
	d.mu.Unlock()
	if changed {
		d.askKeyframe(layer)
	}
}

// Target is the layer wanted.
func (d *DownTrack) Target() int8 {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.target
}

// Current is the layer forwarded now, or -1 while waiting for a keyframe.
func (d *DownTrack) Current() int8 {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.current
}

// Stats returns packets and bytes sent.
func (d *DownTrack) Stats() (packets, bytes uint64) { return d.packets.Load(), d.bytes.Load() }

// Dropped counts packets due to this subscriber that were not sent: its send
// queue was full, or its transport closed or failed under the write.
func (d *DownTrack) Dropped() uint64 { return d.dropped.Load() }

// Sender is the RTP sender carrying this track, once added to a connection.
func (d *DownTrack) Sender() *webrtc.RTPSender {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.sender
}

// Close stops forwarding; the RTCP reader ends when the sender stops.
func (d *DownTrack) Close() {
	d.mu.Lock()
	if !d.closed {
		d.closed = true
		d.closeQueue()
	}
	ssrc := d.ssrc
	ho := d.ho
	d.ho = nil
	d.mu.Unlock()
	unregisterDownTrack(d, ssrc)
	if ho != nil {
		ho.old.RemoveSink(ho.wrap)
	}
}

// placeholderCodec is the codec a down track whose own codec was not
// negotiated binds to: the first media codec negotiated (not RTX), or nil.
func placeholderCodec(codecs []webrtc.RTPCodecParameters) *webrtc.RTPCodecParameters {
	for _, c := range codecs {
		if !strings.EqualFold(c.MimeType, webrtc.MimeTypeRTX) {
			return &c
		}
	}
	return nil
}

// Unsupported reports whether the subscriber's connection could not
// negotiate the track's codec: the down track forwards nothing.
func (d *DownTrack) Unsupported() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.unsupported
}

// fmtpEqual compares fmtp lines ignoring order and case of parameters.
func fmtpEqual(a, b string) bool {
	pa, pb := fmtpParams(a), fmtpParams(b)
	if len(pa) != len(pb) {
		return false
	}
	for k, v := range pa {
		if pb[k] != v {
			return false
		}
	}
	return true
}

func fmtpParams(s string) map[string]string {
	m := map[string]string{}
	for _, kv := range strings.Split(s, ";") {
		kv = strings.TrimSpace(kv)
		if kv == "" {
			continue
		}
		k, v, _ := strings.Cut(kv, "=")
		m[strings.ToLower(k)] = strings.ToLower(v)
	}
	return m
}
