package sfu

import (
	"github.com/pion/interceptor"
	"github.com/pion/interceptor/pkg/cc"
)

// withRTXStreams makes a send-side bandwidth estimator carry
// retransmissions. pion's NACK responder writes RTX packets, which have their
// own SSRC, through the writer of the stream they repair; gcc's pacer (the
// NoOp one too) looks writers up by SSRC and drops packets of SSRCs it was
// never given ("unknown ssrc"). With the cc interceptor registered before
// the NACK responder, no retransmission would ever leave. This registers each
// stream's RTX (and FEC) SSRC with the estimator as well, on the same
// writer, so repairs are sent and counted in the estimate.
//
// It takes gcc.NewSendSideBWE's results as they are:
//
//	return withRTXStreams(gcc.NewSendSideBWE(...))
func withRTXStreams(est cc.BandwidthEstimator, err error) (cc.BandwidthEstimator, error) {
	if err != nil || est == nil {
		return est, err
	}
	return rtxEstimator{est}, nil
}

type rtxEstimator struct{ cc.BandwidthEstimator }

func (e rtxEstimator) AddStream(info *interceptor.StreamInfo, writer interceptor.RTPWriter) interceptor.RTPWriter {
	if isAudio(info) {
		return writer // see twccSeqFactory
	}
	out := e.BandwidthEstimator.AddStream(info, writer)
	for _, s := range [...]struct {
		ssrc uint32
		pt   uint8
	}{
		{info.SSRCRetransmission, info.PayloadTypeRetransmission},
		{info.SSRCForwardErrorCorrection, info.PayloadTypeForwardErrorCorrection},
	} {
		if s.ssrc == 0 || s.ssrc == info.SSRC {
			continue
		}
		repair := *info
		repair.SSRC, repair.PayloadType = s.ssrc, s.pt
		repair.SSRCRetransmission, repair.SSRCForwardErrorCorrection = 0, 0
		// The writer returned for the repair SSRC is not needed: packets
		// reach it through the pacer, which now knows the SSRC.
		_ = e.BandwidthEstimator.AddStream(&repair, writer)
	}
	return out
}
