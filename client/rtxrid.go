package client

import (
	"github.com/pion/interceptor"
	"github.com/pion/rtp"
	"github.com/pion/sdp/v3"
)

// rtxRIDFactory makes a publisher's RTX retransmissions of simulcast packets
// say repaired-rid instead of rid (RFC 8852).
//
// SimulcastTrack puts the mid and rid extensions on each layer's first
// packets, and pion's NACK responder copies a packet's extensions into its
// RTX retransmission. An RTX packet that carries rid makes the receiving
// pion (the server's) take the RTX SSRC for the layer itself: the layer's
// track is re-pointed at the RTX stream and the real one is no longer read,
// so that layer stops for every subscriber. A NACK while publishing starts
// was enough to stop video in load tests one run in two. The interceptor
// sits nearest the network, below the NACK responder, and moves the rid
// value of RTX packets to the repaired-rid extension (or drops it when that
// was not negotiated).
type rtxRIDFactory struct{}

func (rtxRIDFactory) NewInterceptor(string) (interceptor.Interceptor, error) {
	return &rtxRID{}, nil
}

type rtxRID struct{ interceptor.NoOp }

func (*rtxRID) BindLocalStream(info *interceptor.StreamInfo, w interceptor.RTPWriter) interceptor.RTPWriter {
	if info.SSRCRetransmission == 0 {
		return w
	}
	var ridID, rridID uint8
	for _, e := range info.RTPHeaderExtensions {
		switch e.URI {
		case sdp.SDESRTPStreamIDURI:
			ridID = uint8(e.ID)
		case sdp.SDESRepairRTPStreamIDURI:
			rridID = uint8(e.ID)
		}
	}
	if ridID == 0 {
		return w
	}
	rtx := info.SSRCRetransmission
	return interceptor.RTPWriterFunc(func(h *rtp.Header, payload []byte, a interceptor.Attributes) (int, error) {
		if h.SSRC == rtx {
			fixRTXRID(h, ridID, rridID)
		}
		return w.Write(h, payload, a)
	})
}

// fixRTXRID moves an RTX header's rid extension to repaired-rid (rridID 0:
// drops it). The header is the NACK responder's own copy.
func fixRTXRID(h *rtp.Header, ridID, rridID uint8) {
	rid := h.GetExtension(ridID)
	if rid == nil {
		return
	}
	_ = h.DelExtension(ridID)
	if rridID != 0 {
		_ = h.SetExtension(rridID, rid)
	}
}
