package sfu

import (
	"encoding/binary"
	"strings"
	"sync/atomic"

	"github.com/pion/interceptor"
	"github.com/pion/rtp"
	"github.com/starling-rtc/starling/internal/clock"
	"github.com/starling-rtc/starling/internal/twcc"
)

// bweInterceptor is a subscriber connection's congestion-control
// interceptor (bwe.go): it gives each video packet sent a transport-wide
// sequence number, records its size in the estimator's history, and reads
// the connection's TWCC feedback into the estimator.
//
// Audio is left out: it has no layers to choose, and numbering it (then
// parsing its feedback) was a fifth of the server's CPU in an audio room.
// The estimate comes from video packets alone, which are almost all of the
// bytes, and audio-only subscribers send no feedback at all.
//
// It sits right above the connection's directSender (srtpdirect.go), whose
// batched socket stamps each packet's send time after sendmmsg; on pion's
// path the time is taken when pion's write returns.
type bweInterceptor struct {
	interceptor.NoOp
	est     *bwe
	next    atomic.Uint32
	cluster atomic.Uint32 // the probe running, stamped on each packet; 0 = none
	// lastCluster is the last probe's id, kept after it ends: padding is
	// only ever a probe's, and padding queued before the probe's end but
	// numbered after it (its track's writer is a goroutine behind the
	// prober) is still that probe's.
	lastCluster atomic.Uint32
}

func newBWEInterceptor(initial int) *bweInterceptor {
	return &bweInterceptor{est: newBWE(initial)}
}

// NewInterceptor returns i itself: each subscriber connection has its own.
func (i *bweInterceptor) NewInterceptor(string) (interceptor.Interceptor, error) { return i, nil }

// BindLocalStream numbers the stream's packets (video with the TWCC
// extension negotiated only).
func (i *bweInterceptor) BindLocalStream(info *interceptor.StreamInfo, w interceptor.RTPWriter) interceptor.RTPWriter {
	if isAudio(info) {
		return w
	}
	id := twcc.ExtensionID(info)
	if id == 0 {
		return w
	}
	ds, _ := w.(*directStream)
	// One buffer per stream: a down track writes from one goroutine, and
	// the header is marshalled before Write returns.
	buf := make([]byte, 2)
	return interceptor.RTPWriterFunc(func(h *rtp.Header, payload []byte, a interceptor.Attributes) (int, error) {
		seq := uint16(i.next.Add(1) - 1)
		binary.BigEndian.PutUint16(buf, seq)
		if err := h.SetExtension(id, buf); err != nil {
			return 0, err
		}
		// Size on the wire, less IP and UDP: header, payload, SRTP tag.
		pad := h.Padding // only the probes' padding-only packets set it (sendqueue.go)
		cluster := i.cluster.Load()
		if cluster == 0 && pad {
			cluster = i.lastCluster.Load()
		}
		i.est.hist.record(seq, h.MarshalSize()+len(payload)+10, uint16(cluster))
		var n int
		var err error
		if ds != nil {
			n, err = ds.writeStamped(h, payload, a, &i.est.hist, seq)
		} else {
			n, err = w.Write(h, payload, a)
			i.est.hist.stamp(seq, clock.Micros())
		}
		if err == nil && pad {
			i.est.counts.paddingSent.Add(1)
		}
		return n, err
	})
}

// BindRTCPReader feeds TWCC feedback to the estimator. A compound packet
// of feedback only is consumed here: nothing else reads it, and pion's
// readers above would unmarshal it into fresh structs each time.
func (i *bweInterceptor) BindRTCPReader(r interceptor.RTCPReader) interceptor.RTCPReader {
	return interceptor.RTCPReaderFunc(func(b []byte, a interceptor.Attributes) (int, interceptor.Attributes, error) {
		for {
			n, attr, err := r.Read(b, a)
			if err != nil || !i.est.onRTCP(b[:n], clock.Micros()) {
				return n, attr, err
			}
			counters.bweFeedbackPion.Add(1)
			i.est.counts.feedbackPion.Add(1)
		}
	})
}

// onRTCP applies the feedback in a compound RTCP packet and reports whether
// it held feedback only.
func (b *bwe) onRTCP(pkt []byte, now int64) (onlyTWCC bool) {
	if !hasTWCC(pkt) {
		return false // receiver reports, NACKs, PLIs: no lock taken
	}
	onlyTWCC = true
	b.mu.Lock()
	defer b.mu.Unlock()
	for rest := pkt; len(rest) > 0; {
		p, r, ok := splitRTCP(rest)
		if !ok {
			return false
		}
		rest = r
		if !isTWCC(p) {
			onlyTWCC = false
			continue
		}
		if !b.fb.parse(p) {
			return false
		}
		b.applyLocked(&b.fb, now)
	}
	return onlyTWCC
}

// hasTWCC reports whether a compound RTCP packet holds any transport-wide
// feedback.
func hasTWCC(pkt []byte) bool {
	for rest := pkt; len(rest) > 0; {
		p, r, ok := splitRTCP(rest)
		if !ok {
			return false
		}
		if isTWCC(p) {
			return true
		}
		rest = r
	}
	return false
}

func isAudio(info *interceptor.StreamInfo) bool {
	return len(info.MimeType) >= 6 && strings.EqualFold(info.MimeType[:6], "audio/")
}
