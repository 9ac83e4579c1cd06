package sfu

// The subscriber's RTCP for one down track: keyframe requests, NACKs,
// receiver reports and REMB (the fallback estimate when transport-wide
// feedback was not negotiated).

import (
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/webrtc/v4"
)

// StartRTCP reads the subscriber's RTCP for this track: keyframe requests go
// to the publisher; NACKs are answered from the receiver's cache.
func (d *DownTrack) StartRTCP(sender *webrtc.RTPSender) {
	d.mu.Lock()
	d.sender = sender
	d.rtcpDone = make(chan struct{})
	done := d.rtcpDone
	d.mu.Unlock()
	go func() {
		defer close(done)
		for {
			pkts, _, err := sender.ReadRTCP()
			if err != nil {
				return
			}
			d.handleRTCP(pkts)
		}
	}()
}

// handleRTCP acts on a subscriber's feedback for this track. The packets
// come straight from the network (parsed by pion): any field may be absurd.
func (d *DownTrack) handleRTCP(pkts []rtcp.Packet) {
	for _, p := range pkts {
		switch p := p.(type) {
		case *rtcp.PictureLossIndication, *rtcp.FullIntraRequest:
			counters.plisReceived.Add(1)
			if d.plis != nil {
				d.plis.Add(1)
			}
			d.src().RequestKeyframe(d.keyframeLayer())
		case *rtcp.ReceiverEstimatedMaximumBitrate:
			if fb := d.fallbackBWE(); fb != nil {
				fb.onREMB(p.Bitrate, time.Now())
			}
		case *rtcp.ReceiverReport:
			d.onReceiverReport(p)
		case *rtcp.TransportLayerNack:
			counters.nacksReceived.Add(nackedCount(p))
			d.retransmit(p)
		}
	}
}

// onReceiverReport keeps the subscriber's view of this track (loss,
// jitter, round trip) and feeds its loss to the fallback estimator.
func (d *DownTrack) onReceiverReport(rr *rtcp.ReceiverReport) {
	now := time.Now()
	d.mu.Lock()
	ssrc, fb := d.ssrc, d.fallback
	var lost []uint8
	for _, r := range rr.Reports {
		if r.SSRC == ssrc && ssrc != 0 {
			d.onReceptionReport(r, now)
			lost = append(lost, r.FractionLost)
		}
	}
	d.mu.Unlock()
	if fb != nil {
		for _, l := range lost {
			fb.onLoss(l, now)
		}
	}
}

func (d *DownTrack) fallbackBWE() *fallbackEstimator {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.fallback
}

func (d *DownTrack) keyframeLayer() int8 {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.current >= 0 {
		return d.current
	}
	return d.target
}
