package sfu

import (
	"strings"

	"github.com/pion/rtp"
	"github.com/starling-rtc/starling/internal/clock"
)

// A down track's change of source without a break (a drain's
// make-before-break, docs/cluster-failover.md): the publisher of a track
// moves to another node and publishes it again there under the same track
// id, so a subscriber's down track goes over from the old source (the relay
// from the draining node) to the new one (the relay from the new node, or
// the publisher's new connection). The old source keeps being forwarded
// until the new one delivers a packet that can start the stream (for video
// a keyframe, asked for at once); from that packet on only the new source
// is forwarded, through a new munger mapping, so the subscriber sees one
// continuous track: same SSRC, sequence numbers and timestamps going on.

// sourceRef boxes a Source for an atomic pointer.
type sourceRef struct{ s Source }

// src is the source forwarded (during a Handover, the one it goes over to).
func (d *DownTrack) src() Source { return d.srcp.Load().s }

// handover is a change of source under way.
type handover struct {
	old  Source
	wrap *handoverSink // d's sink on old meanwhile
	// armed: d is off old's sinks and on the new source's, so a packet
	// that reaches d.WriteRTP comes from the new source.
	armed bool
	// Audio goes over at the same place in the stream (align.go).
	align alignment
}

// handoverSink feeds d the old source's packets until the new source takes
// over; then it forwards nothing.
type handoverSink struct{ d *DownTrack }

func (w *handoverSink) WriteRTP(hdr *rtp.Header, payload []byte, layer int8) error {
	return w.d.write(hdr, payload, layer, w)
}

func (w *handoverSink) OnSenderReport(layer int8, ntp uint64, rtpTime uint32) {
	d := w.d
	d.mu.Lock()
	current := d.ho != nil && d.ho.wrap == w
	d.mu.Unlock()
	if current {
		d.sr.onSenderReport(layer, ntp, rtpTime, clock.Nanos())
	}
}

// Close: the old source ended; the new one goes on (an audio handover
// waiting for it to catch up goes over with what it held).
func (w *handoverSink) Close() {
	d := w.d
	d.mu.Lock()
	if ho := d.ho; ho != nil && ho.wrap == w && ho.armed && len(ho.align.held) > 0 {
		d.switchLocked(ho, 0, ho.align.held, ho.align.held[0].ts) // what the new source sent while waiting
	}
	d.mu.Unlock()
}

// DesiredLayer keeps the old source sending what d wants meanwhile (a relay
// import asks its origin only for the layers its sinks want).
func (w *handoverSink) DesiredLayer() int8 { return w.d.DesiredLayer() }

// Handover makes next the down track's source without a break: the current
// source goes on being forwarded until next delivers a packet that starts
// the stream (for video, a keyframe on a layer up to the target; one is
// asked for now). next must carry the same codec. It returns false when the
// down track is closed, already handing over, or next is its source.
func (d *DownTrack) Handover(next Source) bool {
	d.mu.Lock()
	old := d.src()
	if d.closed || d.ho != nil || old == next || !sameCodec(old, next) {
		d.mu.Unlock()
		return false
	}
	w := &handoverSink{d: d}
	d.ho = &handover{old: old, wrap: w}
	d.mu.Unlock()
	// Meanwhile old's packets may reach d both ways: d.write drops those
	// that come directly until armed.
	old.AddSink(w)
	old.RemoveSink(d)
	d.mu.Lock()
	if d.ho == nil || d.ho.wrap != w { // closed meanwhile
		d.mu.Unlock()
		old.RemoveSink(w)
		return false
	}
	d.ho.armed = true
	d.srcp.Store(&sourceRef{next})
	target := d.target
	d.mu.Unlock()
	next.AddSink(d)
	if d.video {
		next.RequestKeyframe(target)
	}
	return true
}

// HandingOver reports whether a Handover waits for its new source.
func (d *DownTrack) HandingOver() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.ho != nil
}

// handoverLocked decides, during a Handover, what to do with a packet from
// the old source (from set) or the new one: ok=false drops it (ask: request
// a keyframe of the new source). A packet of the new source that can start
// the stream ends the handover: the munger starts a new mapping at it (for
// audio, at the packet that follows the last one forwarded from the old
// source: align.go). src is the source the packet comes from. d.mu held.
func (d *DownTrack) handoverLocked(in *rtp.Header, layer int8, payload []byte, from *handoverSink) (src Source, ok, ask bool) {
	ho := d.ho
	if from != nil {
		if ho == nil || ho.wrap != from {
			return d.src(), false, false // the new source took over: a late packet of the old one
		}
		if !d.video && d.haveTS {
			return ho.old, d.alignOldLocked(ho, in, payload), false
		}
		return ho.old, true, false
	}
	src = d.src()
	if !ho.armed {
		return src, false, false // the old source's packet, which the wrapper forwards too
	}
	if d.video && (layer > d.target || !IsKeyframeStart(d.kind, payload)) {
		return src, false, d.keyframeDue()
	}
	if !d.video && d.haveTS && !d.alignNewLocked(ho, in, payload) {
		return src, false, false // forwarded already, or held until the old source catches up
	}
	d.switchLocked(ho, layer, nil, in.Timestamp)
	return src, true, false
}

// switchLocked ends the handover: the new source's packets are forwarded
// from now on, through a new munger mapping; held, the new source's packets
// kept while the old one caught up, go out first. d.mu held.
// firstTS is the input timestamp of the first packet forwarded.
func (d *DownTrack) switchLocked(ho *handover, layer int8, held []heldPacket, firstTS uint32) {
	d.ho = nil
	if d.video {
		d.current = layer
	}
	d.munger.Switch()
	d.vp8.Switch()
	d.vp9.Switch()
	if ho.align.found {
		// Where the first packet lies after the last one forwarded, on the
		// old source's timeline: the output timestamps go on as one stream.
		d.munger.HintNextTS(d.tsOut + (firstTS - ho.align.off - d.tsIn))
	}
	d.haveTS = false // the new source's timestamps have their own sender reports
	d.sr.reset()
	go ho.old.RemoveSink(ho.wrap) // not under d.mu: a source may call its sinks under its own lock
	src := d.src()
	for _, h := range held {
		d.forwardLocked(h.seq, h.ts, h.marker, h.payload, layer, src)
	}
}

// sameCodec reports whether two sources carry the same codec, so one down
// track (bound to the first's) can forward the second.
func sameCodec(a, b Source) bool {
	ca, cb := a.Codec(), b.Codec()
	return ca.ClockRate == cb.ClockRate && strings.EqualFold(ca.MimeType, cb.MimeType)
}

// reset forgets every report: they belong to a source no longer forwarded.
func (s *srState) reset() {
	s.mu.Lock()
	s.layers = [MaxLayers]srLayer{}
	s.n = 0
	s.mu.Unlock()
}
