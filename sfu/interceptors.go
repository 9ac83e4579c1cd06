package sfu

import (
	"github.com/pion/interceptor"
	"github.com/pion/interceptor/pkg/nack"
	"github.com/pion/interceptor/pkg/report"
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
// as an SFU needs it: the same interceptors (NACK generator, receiver
// reports, simulcast header extensions, TWCC feedback), except that
//   - there is no stats interceptor: it takes a mutex and does bookkeeping
//     for every packet (~10% of the server's CPU) for pion's GetStats,
//     which Starling never calls; receivers and down tracks count packets
//     and bytes themselves;
//   - the NACK generator asks at most maxNACKsPerPacket times per packet;
//   - there is no NACK responder: pion's copies every packet sent into a
//     1024-slot ring per down track; down tracks answer NACKs themselves
//     from the receiver's shared cache (retransmit.go);
//   - sender reports come from SenderReportInterceptorFactory, which maps
//     down tracks' timestamps through their publishers' reports (rtcp.go),
//     instead of pion's, built from the time the SFU wrote each frame.
//
// Subscriber connections add their own congestion control interceptor
// below these (bweio.go).
func registerSFUInterceptors(m *webrtc.MediaEngine, ir *interceptor.Registry, logs logging.LoggerFactory) error {
	generator, err := nack.NewGeneratorInterceptor(nack.WithGeneratorLoggerFactory(logs),
		nack.GeneratorMaxNacksPerPacket(maxNACKsPerPacket))
	if err != nil {
		return err
	}
	m.RegisterFeedback(webrtc.RTCPFeedback{Type: "nack"}, webrtc.RTPCodecTypeVideo)
	m.RegisterFeedback(webrtc.RTCPFeedback{Type: "nack", Parameter: "pli"}, webrtc.RTPCodecTypeVideo)
	ir.Add(nackCounterFactory{}) // inner to the generator: sees the NACKs it writes
	ir.Add(generator)
	rr, err := report.NewReceiverInterceptor(report.WithReceiverLoggerFactory(logs))
	if err != nil {
		return err
	}
	ir.Add(rr)
	ir.Add(&SenderReportInterceptorFactory{})
	if err := webrtc.ConfigureSimulcastExtensionHeaders(m); err != nil {
		return err
	}
	return webrtc.ConfigureTWCCSenderWithOptions(m, ir, twcc.WithLoggerFactory(logs))
}
