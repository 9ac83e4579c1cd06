package sfu

import (
	"github.com/pion/interceptor"
	"github.com/pion/interceptor/pkg/nack"
	"github.com/pion/interceptor/pkg/report"
	"github.com/pion/interceptor/pkg/stats"
	"github.com/pion/interceptor/pkg/twcc"
	"github.com/pion/logging"
	"github.com/pion/webrtc/v4"
)

// maxNACKsPerPacket bounds how often the SFU asks a publisher for one lost
// packet. pion's NACK generator never learns that a packet came back on the
// RTX stream (it watches the media stream only), so without a bound it asks
// again every 100 ms for as long as the packet is in its 512-packet window:
// ~45 NACKs, and as many retransmissions, per lost packet
// (server/robustness_test.go, TestLossRecoveryUpstream). Three tries over
// 300 ms still repair 5% loss completely on a path with up to ~100 ms RTT.
const maxNACKsPerPacket = 3

// registerSFUInterceptors is webrtc.RegisterDefaultInterceptorsWithOptions
// as an SFU needs it: the same interceptors (NACK generator and responder,
// receiver reports, simulcast header extensions, stats, TWCC feedback),
// except that
//   - the NACK generator asks at most maxNACKsPerPacket times per packet;
//   - the NACK responder retransmits a packet at most maxResends times and
//     not after maxResendAge (nackfilter.go);
//   - sender reports come from SenderReportInterceptorFactory, which maps
//     down tracks' timestamps through their publishers' reports (rtcp.go),
//     instead of pion's, built from the time the SFU wrote each frame.
//
// Register send-side bandwidth estimation before it, wrapped with
// withRTXStreams.
func registerSFUInterceptors(m *webrtc.MediaEngine, ir *interceptor.Registry, logs logging.LoggerFactory) error {
	ir.Add(&nackFilterFactory{}) // inner to the responder: trims what it reads
	if err := webrtc.ConfigureNackWithOptions(m, ir,
		[]nack.GeneratorOption{nack.WithGeneratorLoggerFactory(logs), nack.GeneratorMaxNacksPerPacket(maxNACKsPerPacket)},
		nack.WithResponderLoggerFactory(logs)); err != nil {
		return err
	}
	rr, err := report.NewReceiverInterceptor(report.WithReceiverLoggerFactory(logs))
	if err != nil {
		return err
	}
	ir.Add(rr)
	ir.Add(&SenderReportInterceptorFactory{})
	if err := webrtc.ConfigureSimulcastExtensionHeaders(m); err != nil {
		return err
	}
	if err := webrtc.ConfigureStatsInterceptorWithOptions(ir, stats.WithLoggerFactory(logs)); err != nil {
		return err
	}
	return webrtc.ConfigureTWCCSenderWithOptions(m, ir, twcc.WithLoggerFactory(logs))
}
