// Package metrics exports a node's state in the Prometheus format: rooms,
// participants, tracks, packets and bytes received and forwarded (read from
// the SFU's own counters at scrape time, so the media path has no extra
// work), signaling messages and errors, join latency, and the Go runtime and
// process.
package metrics

import (
	"net/http"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/starling-rtc/starling/protocol"
	"github.com/starling-rtc/starling/room"
	"github.com/starling-rtc/starling/sfu"
)

const namespace = "starling"

// Metrics is one node's registry.
type Metrics struct {
	reg *prometheus.Registry

	messages    *prometheus.CounterVec
	errors      *prometheus.CounterVec
	joinLatency prometheus.Histogram
}

// Source is what the node collector reads at scrape time.
type Source interface {
	Snapshot() room.Snapshot
}

// New makes a registry with the node collector over src (may be nil) and
// the Go runtime and process collectors.
func New(src Source) *Metrics {
	m := &Metrics{reg: prometheus.NewRegistry()}
	m.messages = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Subsystem: "signaling", Name: "messages_total",
		Help: "Signaling requests and notifications handled, by method (unknown methods count as \"other\").",
	}, []string{"method"})
	m.errors = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Subsystem: "signaling", Name: "errors_total",
		Help: "Signaling error responses sent, by protocol error code.",
	}, []string{"code"})
	m.joinLatency = prometheus.NewHistogram(prometheus.HistogramOpts{
		Namespace: namespace, Subsystem: "signaling", Name: "join_duration_seconds",
		Help:    "Time to handle a successful join (token check, room, peer connections).",
		Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
	})
	m.reg.MustRegister(m.messages, m.errors, m.joinLatency,
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if src != nil {
		m.reg.MustRegister(newNodeCollector(src))
	}
	m.reg.MustRegister(mixerCollectors()...)
	return m
}

// Registry is the registry, for registering more collectors (webhooks, recorder).
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Handler serves /metrics.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

var knownMethods = map[string]bool{
	protocol.MethodJoin: true, protocol.MethodOffer: true, protocol.MethodAnswer: true,
	protocol.MethodCandidate: true, protocol.MethodSubscribe: true, protocol.MethodUnsubscribe: true,
	protocol.MethodSetSubscription: true, protocol.MethodMute: true, protocol.MethodUnpublish: true,
	protocol.MethodLeave: true, protocol.MethodPing: true, protocol.MethodSetAudioMix: true,
}

// ObserveSignaling records one signaling message: its method ("" when the
// frame was refused before its method was known), the error code of the
// response (0 = success) and how long the server took. It fits
// signaling.Options.Observe.
func (m *Metrics) ObserveSignaling(method string, code int, elapsed time.Duration) {
	label := method
	if !knownMethods[method] {
		label = "other"
	}
	if method != "" {
		m.messages.WithLabelValues(label).Inc()
	}
	if code != 0 {
		m.errors.WithLabelValues(strconv.Itoa(code)).Inc()
		return
	}
	if method == protocol.MethodJoin {
		m.joinLatency.Observe(elapsed.Seconds())
	}
}

// nodeCollector reads rooms and media counters at scrape time. The SFU's
// per-track counters vanish when a track or subscription closes, so the
// collector remembers each one's last value and keeps what closed ones had
// counted: the totals never go down.
type nodeCollector struct {
	src Source

	rooms, participants, tracks, subscriptions *prometheus.Desc
	packetsIn, bytesIn, packetsOut, bytesOut   *prometheus.Desc
	dropped                                    *prometheus.Desc
	nacksIn, nacksOut, plisIn, plisOut         *prometheus.Desc
	layerSwitches, retransmits                 *prometheus.Desc
	udpDatagrams, udpSendCalls, udpSegmented   *prometheus.Desc
	directStreams, pionStreams                 *prometheus.Desc
	bweDelay, bweLoss, bweProbes, bweRaises    *prometheus.Desc
	bweTapped, bwePion, stallRestarts          *prometheus.Desc
	bweTimeouts                                *prometheus.Desc
	bwePadding, bwePlanned                     *prometheus.Desc
	dataHeld, dataDropped                      *prometheus.Desc
	unsupported, replayed, lateRepairs         *prometheus.Desc
	iceDropped                                 *prometheus.Desc
	rtt, jitter, loss                          *prometheus.Desc // across subscriptions, by quantile

	mu            sync.Mutex
	in, out, drop counterSet
}

func newNodeCollector(src Source) *nodeCollector {
	d := func(name, help string) *prometheus.Desc {
		return prometheus.NewDesc(prometheus.BuildFQName(namespace, "", name), help, nil, nil)
	}
	q := func(name, help string) *prometheus.Desc {
		return prometheus.NewDesc(prometheus.BuildFQName(namespace, "", name), help, []string{"quantile"}, nil)
	}
	return &nodeCollector{
		src:           src,
		rooms:         d("rooms", "Open rooms."),
		participants:  d("participants", "Joined participants over all rooms."),
		tracks:        d("tracks", "Published tracks receiving media."),
		subscriptions: d("subscriptions", "Subscriptions (down tracks) forwarding published tracks."),
		packetsIn:     d("received_packets_total", "RTP packets received from publishers."),
		bytesIn:       d("received_bytes_total", "RTP bytes (header + payload) received from publishers."),
		packetsOut:    d("forwarded_packets_total", "RTP packets forwarded to subscribers."),
		bytesOut:      d("forwarded_bytes_total", "RTP bytes (header + payload) forwarded to subscribers."),
		dropped:       d("dropped_packets_total", "RTP packets not delivered to a subscriber: its send queue was full or writing failed."),
		nacksIn:       d("nacks_received_total", "Packets subscribers reported lost (sequence numbers in their NACKs)."),
		nacksOut:      d("nacks_sent_total", "Packets the SFU asked publishers to resend (sequence numbers in its NACKs)."),
		plisIn:        d("keyframe_requests_received_total", "Keyframe requests (PLI, FIR) from subscribers."),
		plisOut:       d("keyframe_requests_sent_total", "Keyframe requests (PLI) sent to publishers, after coalescing."),
		layerSwitches: d("layer_switches_total", "Simulcast layer switches on down tracks."),
		retransmits:   d("retransmitted_packets_total", "Packets resent to subscribers in answer to their NACKs, and late repairs sent on their RTX streams."),
		udpDatagrams:  d("udp_datagrams_sent_total", "Datagrams sent through the batched media sockets (RTP, RTCP, DTLS, STUN)."),
		udpSendCalls:  d("udp_send_calls_total", "System calls (sendmmsg) that sent them."),
		udpSegmented:  d("udp_segmented_datagrams_total", "Of those datagrams, the ones the kernel cut from one segmented message (UDP GSO)."),
		directStreams: d("srtp_direct_streams_total", "Outgoing RTP streams encrypted by Starling and queued straight to the batched socket (rtc.direct_srtp)."),
		pionStreams:   d("srtp_pion_streams_total", "Outgoing RTP streams sent through pion's write path although rtc.direct_srtp is on (Starling the DTLS client, or ICE-TCP)."),
		bweDelay:      d("bwe_delay_decreases_total", "Decreases of a subscriber's bandwidth estimate on a growing delay (congestion control)."),
		bweLoss:       d("bwe_loss_decreases_total", "Decreases of a subscriber's bandwidth estimate on loss above 10%."),
		bweProbes:     d("bwe_probes_total", "Bandwidth probes sent to subscribers (padding on top of media, before raising a layer)."),
		bweRaises:     d("bwe_probe_raises_total", "Probes whose measured rate raised the subscriber's estimate."),
		bwePadding:    d("bwe_padding_packets_total", "Padding-only RTP packets written to subscribers (what the bandwidth probes send)."),
		bwePlanned:    d("bwe_padding_planned_total", "Padding-only RTP packets the bandwidth probes set out to send: a probe that fell short shows as the gap to bwe_padding_packets_total."),
		bweTapped:     d("bwe_feedback_socket_total", "Congestion control feedback packets from subscribers read straight off the batched media socket, not through pion."),
		bwePion:       d("bwe_feedback_pion_total", "Congestion control feedback packets from subscribers read through pion's receive path (no socket tap: pion's write path, ICE-TCP)."),
		bweTimeouts:   d("bwe_feedback_timeouts_total", "Cuts of a subscriber's bandwidth estimate because its feedback stopped for 1 s while packets sent over 1 s plus the link's report delay ago were outstanding (a dead or blacked-out link; halved each second, to 100 kbit/s)."),
		stallRestarts: d("video_stall_restarts_total", "Subscribers' video restarted at a keyframe by the watchdog (silent for 3 s while its publisher sent), and subscriber connections it found connected but marked down."),
		dataHeld:      d("data_messages_held_total", "Data messages held for a subscriber until its data channel opened."),
		dataDropped:   d("data_messages_dropped_total", "Data messages not delivered: the subscriber's holding queue was full, or its data channel closed first."),
		unsupported:   d("down_tracks_unsupported_total", "Subscriptions whose codec the subscriber's connection could not negotiate (a codec published after its first negotiation of that kind): they forward nothing, the subscriber's other tracks go on."),
		iceDropped:    d("ice_restart_writes_dropped_total", "Writes on a media connection an ICE restart had just closed, counted as lost datagrams (DTLS and SCTP resend them on the new path) rather than errors that closed the peer connection."),
		lateRepairs:   d("late_repairs_total", "Packets a publisher's resend brought so late (32 or more packets behind the newest sent to a subscriber) that they went to the subscriber on its RTX stream, past its SRTP replay window."),
		replayed:      d("late_keyframe_replayed_packets_total", "Packets a subscriber's down track refused while waiting for a keyframe whose first packet came late (repaired), forwarded from the cache right after it."),
		rtt:           q("subscription_rtt_seconds", "Round-trip time to subscribers, from their receiver reports: quantiles over subscriptions reported in the last 10 s."),
		jitter:        q("subscription_jitter_seconds", "Interarrival jitter subscribers report: quantiles over subscriptions reported in the last 10 s."),
		loss:          q("subscription_loss_ratio", "Fraction of packets subscribers report lost in their last interval: quantiles over subscriptions reported in the last 10 s."),
		in:            newCounterSet(),
		out:           newCounterSet(),
		drop:          newCounterSet(),
	}
}

func (c *nodeCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.rooms, c.participants, c.tracks, c.subscriptions,
		c.packetsIn, c.bytesIn, c.packetsOut, c.bytesOut, c.dropped,
		c.nacksIn, c.nacksOut, c.plisIn, c.plisOut, c.layerSwitches, c.retransmits,
		c.udpDatagrams, c.udpSendCalls, c.udpSegmented, c.directStreams, c.pionStreams, c.dataHeld, c.dataDropped, c.unsupported, c.replayed, c.lateRepairs, c.iceDropped,
		c.bweDelay, c.bweLoss, c.bweProbes, c.bweRaises, c.bwePadding, c.bwePlanned, c.bweTapped, c.bwePion, c.bweTimeouts, c.stallRestarts, c.rtt, c.jitter, c.loss} {
		ch <- d
	}
}

// statser is what sfu.Receiver and sfu.DownTrack have in common.
type statser interface {
	Stats() (packets, bytes uint64)
}

func (c *nodeCollector) Collect(ch chan<- prometheus.Metric) {
	snap := c.src.Snapshot()
	subs := 0
	var rtts, jitters, losses []float64
	fresh := time.Now().Add(-receptionFresh)
	c.mu.Lock()
	c.in.begin()
	c.out.begin()
	c.drop.begin()
	for _, r := range snap.Receivers {
		c.in.see(r)
		for _, s := range r.Sinks() {
			if d, ok := s.(*sfu.DownTrack); ok {
				subs++
				c.out.see(d)
				c.drop.see(droppedOf{d})
				if st, ok := d.ReceptionStats(); ok && st.At.After(fresh) {
					if st.RTT > 0 {
						rtts = append(rtts, st.RTT.Seconds())
					}
					jitters = append(jitters, st.Jitter.Seconds())
					losses = append(losses, st.FractionLost)
				}
			}
		}
	}
	pin, bin := c.in.end()
	pout, bout := c.out.end()
	dropped, _ := c.drop.end()
	c.mu.Unlock()

	gauge := func(d *prometheus.Desc, v int) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, float64(v))
	}
	counter := func(d *prometheus.Desc, v uint64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v))
	}
	gauge(c.rooms, snap.Rooms)
	gauge(c.participants, snap.Participants)
	gauge(c.tracks, snap.Tracks)
	gauge(c.subscriptions, subs)
	counter(c.packetsIn, pin)
	counter(c.bytesIn, bin)
	counter(c.packetsOut, pout)
	counter(c.bytesOut, bout)
	ev := sfu.ReadCounters()
	counter(c.dropped, dropped+ev.QueueDrops)
	counter(c.nacksIn, ev.NACKsReceived)
	counter(c.nacksOut, ev.NACKsSent)
	counter(c.plisIn, ev.PLIsReceived)
	counter(c.plisOut, ev.PLIsSent)
	counter(c.layerSwitches, ev.LayerSwitches)
	counter(c.retransmits, ev.Retransmits)
	counter(c.udpDatagrams, ev.DatagramsSent)
	counter(c.udpSendCalls, ev.SendCalls)
	counter(c.udpSegmented, ev.SegmentedDatagrams)
	counter(c.directStreams, ev.DirectStreams)
	counter(c.pionStreams, ev.PionStreams)
	counter(c.bweDelay, ev.BWEDelayDecreases)
	counter(c.bweLoss, ev.BWELossDecreases)
	counter(c.bweProbes, ev.BWEProbes)
	counter(c.bweRaises, ev.BWEProbeRaises)
	counter(c.bwePadding, ev.BWEPaddingSent)
	counter(c.bwePlanned, ev.BWEPaddingPlanned)
	counter(c.bweTapped, ev.BWEFeedbackTapped)
	counter(c.bwePion, ev.BWEFeedbackPion)
	counter(c.bweTimeouts, ev.BWEFeedbackTimeouts)
	counter(c.stallRestarts, ev.StallRestarts)
	counter(c.dataHeld, ev.DataHeld)
	counter(c.dataDropped, ev.DataDropped)
	counter(c.unsupported, ev.UnsupportedDownTracks)
	counter(c.replayed, ev.KeyframeReplays)
	counter(c.lateRepairs, ev.LateRepairs)
	counter(c.iceDropped, ev.RestartWritesDropped)
	quantiles(ch, c.rtt, rtts)
	quantiles(ch, c.jitter, jitters)
	quantiles(ch, c.loss, losses)
}

// receptionFresh: older receiver reports describe subscriptions that went
// quiet (paused, or a subscriber that stopped reporting).
const receptionFresh = 10 * time.Second

// quantiles exports the median, 95th percentile and maximum of values as
// gauges; nothing when there are none.
func quantiles(ch chan<- prometheus.Metric, d *prometheus.Desc, values []float64) {
	if len(values) == 0 {
		return
	}
	sort.Float64s(values)
	at := func(q float64) float64 { return values[int(q*float64(len(values)-1)+0.5)] }
	for _, q := range []struct {
		label string
		v     float64
	}{{"0.5", at(0.5)}, {"0.95", at(0.95)}, {"1", values[len(values)-1]}} {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, q.v, q.label)
	}
}

// droppedOf counts a down track's dropped packets as a statser.
type droppedOf struct{ d *sfu.DownTrack }

func (x droppedOf) Stats() (uint64, uint64) { return x.d.Dropped(), 0 }

// counterSet sums the counters of a changing set of objects monotonically.
type counterSet struct {
	last, seen       map[statser][2]uint64
	closedP, closedB uint64
}

func newCounterSet() counterSet {
	return counterSet{last: map[statser][2]uint64{}, seen: map[statser][2]uint64{}}
}

func (s *counterSet) begin() { clear(s.seen) }

func (s *counterSet) see(x statser) {
	p, b := x.Stats()
	s.seen[x] = [2]uint64{p, b}
}

// end retires the objects not seen this time and returns the totals.
func (s *counterSet) end() (packets, bytes uint64) {
	for x, v := range s.last {
		if _, ok := s.seen[x]; !ok {
			s.closedP += v[0]
			s.closedB += v[1]
		}
	}
	s.last, s.seen = s.seen, s.last
	packets, bytes = s.closedP, s.closedB
	for _, v := range s.last {
		packets += v[0]
		bytes += v[1]
	}
	return packets, bytes
}
