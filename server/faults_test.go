package server_test

// Fault injection for robustness tests: a pion interceptor that drops RTP
// packets at one client's own end, and pion APIs built around it.

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/interceptor/pkg/nack"
	"github.com/pion/interceptor/pkg/report"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
	"github.com/starling-rtc/starling/client"
)

// lossDir says which packets a lossInjector drops.
type lossDir int

const (
	lossIncoming lossDir = iota // RTP the client receives (before its NACK generator sees it)
	lossOutgoing                // RTP the client sends (after its NACK responder kept a copy)
)

// lossInjector drops a random fraction of RTP packets of the streams whose
// mime type matches. Register it before pion's default interceptors so it is
// the innermost one: nearest the network, invisible to NACK logic.
type lossInjector struct {
	rate  float64
	dir   lossDir
	match func(mime string) bool
	// pick, when set, chooses the packets to drop instead of the random
	// draw: seq is the media sequence number (of the repaired packet, for
	// a retransmission).
	pick func(seq uint16, rtx bool) bool

	mu  sync.Mutex
	rng *rand.Rand

	seen, dropped atomic.Int64 // media packets (not RTX)
	rtxSeen       atomic.Int64 // retransmissions on an RTX stream
	rtxDropped    atomic.Int64
	nacksSent     atomic.Int64 // NACK sequence numbers this client asked for
	nacksSeen     atomic.Int64 // NACK sequence numbers this client was asked for

	// What happened to each media sequence number, and when (sent, dropped,
	// NACKed, resent), for the failure message of a test that lost packets.
	start   time.Time
	history map[uint16][]string
	seqOf   map[string]uint16 // media payload -> its sequence number
	order   []uint16          // media sequence numbers as sent
	lost    map[uint16]bool   // media sequence numbers dropped on their first sending
	nacked  map[uint16]bool
	markAt  int // see mark
}

// mark notes the packets sent so far: unasked looks at later ones only
// (a receiver cannot know of a loss before its own first packet, and a
// connection drops what is sent before its SRTP is up).
func (l *lossInjector) mark() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.markAt = len(l.order)
}

// unasked lists the media packets dropped on their first sending that no
// NACK asked for, among those a receiver could know were missing: sent
// after the mark and the first packet after it that got through, and
// before the last packet that got through.
func (l *lossInjector) unasked() []uint16 {
	l.mu.Lock()
	defer l.mu.Unlock()
	first, last := -1, -1
	for i := l.markAt; i < len(l.order); i++ {
		seq := l.order[i]
		if !l.lost[seq] {
			if first < 0 {
				first = i
			}
			last = i
		}
	}
	var out []uint16
	for i := first + 1; i < last; i++ {
		if seq := l.order[i]; l.lost[seq] && !l.nacked[seq] {
			out = append(out, seq)
		}
	}
	return out
}

// note records an event of a media sequence number.
func (l *lossInjector) note(seq uint16, what string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.history[seq] = append(l.history[seq], fmt.Sprintf("%s@%dms", what, time.Since(l.start).Milliseconds()))
}

// story tells what happened to the media packet that carried payload.
func (l *lossInjector) story(payload []byte) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	seq, ok := l.seqOf[string(payload)]
	if !ok {
		return "never seen by the loss injector"
	}
	return fmt.Sprintf("seq %d: %s", seq, strings.Join(l.history[seq], ", "))
}

func newLossInjector(rate float64, dir lossDir, seed uint64, match func(mime string) bool) *lossInjector {
	if match == nil {
		match = func(string) bool { return true }
	}
	return &lossInjector{rate: rate, dir: dir, match: match, rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)),
		start: time.Now(), history: map[uint16][]string{}, seqOf: map[string]uint16{},
		lost: map[uint16]bool{}, nacked: map[uint16]bool{}}
}

func (l *lossInjector) drop() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.rng.Float64() < l.rate
}

func isRTX(mime string) bool { return strings.EqualFold(mime, webrtc.MimeTypeRTX) }

// NewInterceptor makes one per peer connection; counters are shared.
func (l *lossInjector) NewInterceptor(string) (interceptor.Interceptor, error) {
	return &lossConn{l: l}, nil
}

type lossConn struct {
	interceptor.NoOp
	l *lossInjector
}

func (c *lossConn) BindRemoteStream(info *interceptor.StreamInfo, reader interceptor.RTPReader) interceptor.RTPReader {
	l := c.l
	rtx := isRTX(info.MimeType)
	if l.dir != lossIncoming || !(rtx || l.match(info.MimeType)) {
		return reader
	}
	return interceptor.RTPReaderFunc(func(b []byte, a interceptor.Attributes) (int, interceptor.Attributes, error) {
		for {
			n, attr, err := reader.Read(b, a)
			if err != nil {
				return n, attr, err
			}
			if rtx {
				l.rtxSeen.Add(1)
			} else {
				l.seen.Add(1)
			}
			if l.drop() {
				if rtx {
					l.rtxDropped.Add(1)
				} else {
					l.dropped.Add(1)
				}
				continue
			}
			return n, attr, nil
		}
	})
}

func (c *lossConn) BindLocalStream(info *interceptor.StreamInfo, writer interceptor.RTPWriter) interceptor.RTPWriter {
	l := c.l
	if l.dir != lossOutgoing || !l.match(info.MimeType) {
		return writer
	}
	return interceptor.RTPWriterFunc(func(h *rtp.Header, payload []byte, a interceptor.Attributes) (int, error) {
		rtx := h.SSRC != info.SSRC // the NACK responder resends on the RTX SSRC through this writer
		seq, what := h.SequenceNumber, "sent"
		if rtx {
			l.rtxSeen.Add(1)
			if len(payload) >= 2 {
				seq, what = binary.BigEndian.Uint16(payload), "resent"
			}
		}
		drop := l.pick
		dropped := (drop != nil && drop(seq, rtx)) || (drop == nil && l.drop())
		if !rtx {
			l.seen.Add(1)
			l.mu.Lock()
			l.seqOf[string(payload)] = seq
			l.order = append(l.order, seq)
			l.lost[seq] = dropped
			l.mu.Unlock()
		}
		if dropped {
			if rtx {
				l.rtxDropped.Add(1)
			} else {
				l.dropped.Add(1)
			}
			l.note(seq, what+"+dropped")
			return h.MarshalSize() + len(payload), nil
		}
		l.note(seq, what)
		return writer.Write(h, payload, a)
	})
}

// BindRTCPWriter counts the NACKs this client sends.
func (c *lossConn) BindRTCPWriter(writer interceptor.RTCPWriter) interceptor.RTCPWriter {
	return interceptor.RTCPWriterFunc(func(pkts []rtcp.Packet, a interceptor.Attributes) (int, error) {
		for _, p := range pkts {
			if n, ok := p.(*rtcp.TransportLayerNack); ok {
				for _, pair := range n.Nacks {
					c.l.nacksSent.Add(int64(len(pair.PacketList())))
				}
			}
		}
		return writer.Write(pkts, a)
	})
}

// BindRTCPReader counts the NACKs this client receives.
func (c *lossConn) BindRTCPReader(reader interceptor.RTCPReader) interceptor.RTCPReader {
	return interceptor.RTCPReaderFunc(func(b []byte, a interceptor.Attributes) (int, interceptor.Attributes, error) {
		n, attr, err := reader.Read(b, a)
		if err != nil {
			return n, attr, err
		}
		if pkts, perr := rtcp.Unmarshal(b[:n]); perr == nil {
			for _, p := range pkts {
				if nk, ok := p.(*rtcp.TransportLayerNack); ok {
					for _, pair := range nk.Nacks {
						seqs := pair.PacketList()
						c.l.nacksSeen.Add(int64(len(seqs)))
						for _, seq := range seqs {
							c.l.note(seq, "NACKed")
							c.l.mu.Lock()
							c.l.nacked[seq] = true
							c.l.mu.Unlock()
						}
					}
				}
			}
		}
		return n, attr, err
	})
}

// apiOptions tune a test client's pion API.
type apiOptions struct {
	media func(*webrtc.MediaEngine) error // register codecs or header extensions
	first []interceptor.Factory           // registered before pion's defaults: innermost
	// noReplayCheck turns SRTP replay protection off. A lossInjector drops
	// incoming packets above SRTP, so the replay list has already seen them;
	// pion's NACK responder resends a packet with the same RTX sequence
	// number every time, and a resend of an RTX packet "lost" by the
	// injector would count as a replay. Without the check, injected loss
	// behaves like loss on the wire.
	noReplayCheck bool
	// srInterval: how often the client sends sender reports; 0 = pion's 1 s.
	srInterval time.Duration
	// maxNACKs: the client asks for a missing packet at most this many
	// times, like a browser, whose NACK list gives a packet up after a few
	// retries; 0 = pion's default, which asks while the packet is among
	// the last 512 and so still asks for a repair seconds late.
	maxNACKs uint16
}

// faultAPI builds a loopback-only pion API like client.LoopbackAPI.
func faultAPI(t testing.TB, o apiOptions) *webrtc.API {
	t.Helper()
	tuneMedia, first := o.media, o.first
	m := &webrtc.MediaEngine{}
	if err := m.RegisterDefaultCodecs(); err != nil {
		t.Fatal(err)
	}
	if tuneMedia != nil {
		if err := tuneMedia(m); err != nil {
			t.Fatal(err)
		}
	}
	ir := &interceptor.Registry{}
	for _, f := range first {
		ir.Add(f)
	}
	var opts []webrtc.InterceptorOption
	if o.srInterval > 0 {
		opts = append(opts, webrtc.WithReportSenderOptions(report.SenderInterval(o.srInterval)))
	}
	if o.maxNACKs > 0 {
		opts = append(opts, webrtc.WithNackGeneratorOptions(nack.GeneratorMaxNacksPerPacket(o.maxNACKs)))
	}
	if err := webrtc.RegisterDefaultInterceptorsWithOptions(m, ir, opts...); err != nil {
		t.Fatal(err)
	}
	se := webrtc.SettingEngine{}
	se.SetIncludeLoopbackCandidate(true)
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	se.SetIPFilter(func(ip net.IP) bool { return ip.IsLoopback() })
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	se.DisableSRTPReplayProtection(o.noReplayCheck)
	se.SetICEMaxBindingRequests(client.ICECheckRetries) // as the client's own APIs
	return webrtc.NewAPI(webrtc.WithMediaEngine(m), webrtc.WithInterceptorRegistry(ir), webrtc.WithSettingEngine(se))
}

func withClientAPI(api *webrtc.API) func(*client.Options) {
	return func(o *client.Options) { o.API = api }
}

// coverage compares what a subscriber got with what the publisher sent:
// from the first sent packet the subscriber received (it starts at a
// keyframe) to len(sent)-tail (the newest packets may still be in repair),
// how many distinct sent payloads arrived. Duplicates count once.
func packetCoverage(sent, got [][]byte, tail int) (received, expected int) {
	window, have := coverageWindow(sent, got, tail)
	if window == nil {
		return 0, len(sent)
	}
	for _, p := range window {
		if have[string(p)] {
			received++
		}
	}
	return received, len(window)
}

// missingPayloads lists the sent payloads packetCoverage counts as expected
// but not received.
func missingPayloads(sent, got [][]byte, tail int) [][]byte {
	window, have := coverageWindow(sent, got, tail)
	var miss [][]byte
	for _, p := range window {
		if !have[string(p)] {
			miss = append(miss, p)
		}
	}
	return miss
}

// coverageWindow is the part of sent packetCoverage judges (nil when the
// subscriber got none of it) and the set of payloads got.
func coverageWindow(sent, got [][]byte, tail int) (window [][]byte, have map[string]bool) {
	have = make(map[string]bool, len(got))
	for _, p := range got {
		have[string(p)] = true
	}
	for i, p := range sent {
		if have[string(p)] {
			return sent[i:max(len(sent)-tail, i)], have
		}
	}
	return nil, have
}
