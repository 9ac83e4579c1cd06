package sfu

import (
	"math/bits"
	"sync/atomic"

	"github.com/pion/interceptor"
	"github.com/pion/rtcp"
)

// Counters are media event totals for the whole process, like the Go
// runtime's own metrics: every engine in the process adds to them. They only
// grow, so a metrics scrape reads them as Prometheus counters.
type Counters struct {
	NACKsReceived uint64 // sequence numbers subscribers reported lost
	NACKsSent     uint64 // sequence numbers the SFU asked publishers to resend
	PLIsReceived  uint64 // keyframe requests (PLI, FIR) from subscribers
	PLIsSent      uint64 // keyframe requests sent to publishers, after coalescing
	LayerSwitches uint64 // simulcast layer changes on down tracks
	QueueDrops    uint64 // packets dropped because a send queue (a down track's, or the batched socket's) was full
	Retransmits   uint64 // packets sent to subscribers on RTX (NACK answers, late repairs)
	// Batched media sockets (batchconn.go): datagrams sent, the system
	// calls that sent them, and how many of them the kernel segmented from
	// one message (UDP GSO).
	DatagramsSent      uint64
	SendCalls          uint64
	SegmentedDatagrams uint64
	// Outgoing RTP streams (a down track with its RTX) by the path their
	// packets took: Starling's own SRTP encryption straight into the
	// batched socket (srtpdirect.go), or pion's write path.
	DirectStreams uint64
	PionStreams   uint64
	// Congestion control (bwe.go): decreases of subscribers' estimates on
	// a growing delay and on loss, probes run, and probes that raised an
	// estimate.
	BWEDelayDecreases uint64
	BWELossDecreases  uint64
	BWEProbes         uint64
	BWEProbeRaises    uint64
	// Padding-only packets written to subscribers: the probes' payload;
	// and those the probes planned (a probe that fell short shows as the
	// difference).
	BWEPaddingSent    uint64
	BWEPaddingPlanned uint64
	// Feedback packets read straight off the batched socket (rtcptap.go)
	// rather than through pion.
	BWEFeedbackTapped uint64
	BWEFeedbackPion   uint64 // and feedback packets read through pion (no tap: pion's write path, ICE-TCP)
	// Estimates cut because a subscriber's feedback stopped while packets
	// were outstanding (bwetimeout.go): a dead or blacked-out link.
	BWEFeedbackTimeouts uint64
	// Data messages to subscribers (dataqueue.go): held until the
	// subscriber's data channel opened, and dropped (the holding queue was
	// full, or the channel closed first).
	DataHeld    uint64
	DataDropped uint64
	// Video down tracks the start watchdog restarted at a keyframe (silent
	// for 3 s while they should have been sending), and connections it
	// found connected but marked down (watchdog.go).
	StallRestarts uint64
	// Down tracks whose codec the subscriber's connection could not
	// negotiate (downtrack.go, Bind): they forward nothing.
	UnsupportedDownTracks uint64
	// Packets a down track refused while it waited for a keyframe whose
	// first packet came late (lost upstream, repaired), forwarded from the
	// cache right after it (replay.go).
	KeyframeReplays uint64
	// Packets repaired so late (lateOnRTX slots or more behind the newest
	// sent) that a down track sent them on its RTX stream (laterepair.go);
	// also counted in Retransmits.
	LateRepairs uint64
	// Writes on a connection an ICE restart had just closed, reported sent
	// (a lost datagram) instead of failing and closing the peer
	// connection (restartmux.go).
	RestartWritesDropped uint64
}

var counters struct {
	nacksReceived, nacksSent, plisReceived, plisSent, layerSwitches, queueDrops, retransmits atomic.Uint64
	datagramsSent, sendCalls, segmentedDatagrams                                             atomic.Uint64
	directStreams, pionStreams                                                               atomic.Uint64
	bweDelayDecreases, bweLossDecreases, bweProbes, bweProbeRaises, paddingSent              atomic.Uint64
	bweFeedbackTapped, bweFeedbackPion, bweFeedbackTimeouts, paddingPlanned                  atomic.Uint64
	dataHeld, dataDropped                                                                    atomic.Uint64
	stallRestarts, unsupportedDownTracks, replayed, lateRepairs                              atomic.Uint64
	restartWritesDropped                                                                     atomic.Uint64
}

// ReadCounters returns the current totals.
func ReadCounters() Counters {
	return Counters{
		NACKsReceived: counters.nacksReceived.Load(),
		NACKsSent:     counters.nacksSent.Load(),
		PLIsReceived:  counters.plisReceived.Load(),
		PLIsSent:      counters.plisSent.Load(),
		LayerSwitches: counters.layerSwitches.Load(),
		QueueDrops:    counters.queueDrops.Load(),
		Retransmits:   counters.retransmits.Load(),

		DatagramsSent:         counters.datagramsSent.Load(),
		SendCalls:             counters.sendCalls.Load(),
		SegmentedDatagrams:    counters.segmentedDatagrams.Load(),
		DirectStreams:         counters.directStreams.Load(),
		PionStreams:           counters.pionStreams.Load(),
		BWEDelayDecreases:     counters.bweDelayDecreases.Load(),
		BWELossDecreases:      counters.bweLossDecreases.Load(),
		BWEProbes:             counters.bweProbes.Load(),
		BWEProbeRaises:        counters.bweProbeRaises.Load(),
		BWEPaddingSent:        counters.paddingSent.Load(),
		BWEPaddingPlanned:     counters.paddingPlanned.Load(),
		BWEFeedbackTapped:     counters.bweFeedbackTapped.Load(),
		BWEFeedbackPion:       counters.bweFeedbackPion.Load(),
		BWEFeedbackTimeouts:   counters.bweFeedbackTimeouts.Load(),
		DataHeld:              counters.dataHeld.Load(),
		DataDropped:           counters.dataDropped.Load(),
		StallRestarts:         counters.stallRestarts.Load(),
		UnsupportedDownTracks: counters.unsupportedDownTracks.Load(),
		KeyframeReplays:       counters.replayed.Load(),
		LateRepairs:           counters.lateRepairs.Load(),
		RestartWritesDropped:  counters.restartWritesDropped.Load(),
	}
}

// nackedCount is how many sequence numbers a NACK names.
func nackedCount(n *rtcp.TransportLayerNack) uint64 {
	var c uint64
	for _, p := range n.Nacks {
		c += 1 + uint64(bits.OnesCount16(uint16(p.LostPackets)))
	}
	return c
}

// nackCounterFactory makes an interceptor that counts the NACKs pion's
// generator sends to publishers: registered before the generator, it is the
// writer the generator writes through.
type nackCounterFactory struct{}

func (nackCounterFactory) NewInterceptor(string) (interceptor.Interceptor, error) {
	return &nackCounter{}, nil
}

type nackCounter struct{ interceptor.NoOp }

func (*nackCounter) BindRTCPWriter(writer interceptor.RTCPWriter) interceptor.RTCPWriter {
	return interceptor.RTCPWriterFunc(func(pkts []rtcp.Packet, a interceptor.Attributes) (int, error) {
		for _, p := range pkts {
			if nack, ok := p.(*rtcp.TransportLayerNack); ok {
				counters.nacksSent.Add(nackedCount(nack))
			}
		}
		return writer.Write(pkts, a)
	})
}
