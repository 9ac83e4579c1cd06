package sfu

import (
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/interceptor/pkg/report"
	"github.com/pion/interceptor/pkg/twcc"
	"github.com/pion/logging"
	"github.com/pion/webrtc/v4"
)

// registerSFUInterceptors is webrtc.RegisterDefaultInterceptorsWithOptions
// as an SFU needs it: the same interceptors (receiver reports, simulcast
// header extensions, TWCC feedback), except that
//   - there is no stats interceptor: it takes a mutex and does bookkeeping
//     for every packet (~10% of the server's CPU) for pion's GetStats,
//     which Starling never calls; receivers and down tracks count packets
//     and bytes themselves;
//   - there is no NACK generator: receivers ask for lost packets
//     themselves (nack.go), since pion's never sees a packet repaired;
//   - there is no NACK responder: pion's copies every packet sent into a
//     1024-slot ring per down track; down tracks answer NACKs themselves
//     from the receiver's shared cache (retransmit.go);
//   - a retransmission wakes the track's reader (repairWaker): pion would
//     hold it until the next media packet;
//   - sender reports come from SenderReportInterceptorFactory, which maps
//     down tracks' timestamps through their publishers' reports (rtcp.go),
//     instead of pion's, built from the time the SFU wrote each frame.
//
// Subscriber connections add their own congestion control interceptor
// below these (bweio.go).
func registerSFUInterceptors(m *webrtc.MediaEngine, ir *interceptor.Registry, logs logging.LoggerFactory, srInterval time.Duration) error {
	m.RegisterFeedback(webrtc.RTCPFeedback{Type: "nack"}, webrtc.RTPCodecTypeVideo)
	m.RegisterFeedback(webrtc.RTCPFeedback{Type: "nack", Parameter: "pli"}, webrtc.RTPCodecTypeVideo)
	ir.Add(nackCounterFactory{}) // counts the NACKs receivers write (nack.go)
	rr, err := report.NewReceiverInterceptor(report.WithReceiverLoggerFactory(logs))
	if err != nil {
		return err
	}
	ir.Add(rr)
	ir.Add(&SenderReportInterceptorFactory{Interval: srInterval})
	ir.Add(repairWakerFactory{}) // a retransmission reaches sinks at once (repairwake.go)
	if err := webrtc.ConfigureSimulcastExtensionHeaders(m); err != nil {
		return err
	}
	return webrtc.ConfigureTWCCSenderWithOptions(m, ir, twcc.WithLoggerFactory(logs))
}
