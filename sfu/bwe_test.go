package sfu

import (
	"encoding/binary"
	"math/rand"
	"testing"

	"github.com/pion/interceptor"
	"github.com/pion/interceptor/pkg/twcc"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/sdp/v3"

	"github.com/starling-rtc/starling/internal/clock"
)

// linkSim runs one estimator against a simulated downlink in virtual time
// (µs): a sender forwarding video frames at a rate (and padding while a
// probe runs), a link (a token bucket with a queue of limited delay, or
// unlimited), a receiver that records arrivals with pion's own TWCC
// recorder (what pion clients send) and sends feedback every 100 ms.
type linkSim struct {
	t          *testing.T
	b          *bwe
	rec        *twcc.Recorder
	rng        *rand.Rand
	now        int64 // µs
	seq        uint16
	media      float64 // bits/s sent as 1200-byte packets in 30 fps frames
	probe      float64 // bits/s of 285-byte padding on top, while > 0
	capacity   float64 // link bits/s; 0 = unlimited
	buffer     int64   // µs of queue the link holds before dropping
	jitter     int64   // µs of random extra delay at the receiver
	delay      int64   // µs of extra propagation delay (a long round trip)
	loss       float64 // random loss on the link
	stallEvery int64   // µs between receiver stalls (0 = none)
	stallFor   int64
	busyUntil  int64 // the link's queue drains at this time
	pending    []simArrival
	sent, lost int
}

type simArrival struct {
	seq uint16
	at  int64
}

func newLinkSim(t *testing.T, initial int) *linkSim {
	return &linkSim{t: t, b: newBWE(initial), rec: twcc.NewRecorder(1), rng: rand.New(rand.NewSource(1)), now: 1_000_000}
}

func (s *linkSim) send(size int, cluster uint16) {
	seq := s.seq
	s.seq++
	s.b.hist.record(seq, size, cluster)
	s.b.hist.stamp(seq, s.now)
	s.sent++
	if s.loss > 0 && s.rng.Float64() < s.loss {
		s.lost++
		return
	}
	at := s.now + 1000 + s.delay // 1 ms propagation, and any extra
	if s.capacity > 0 {
		start := max(s.now, s.busyUntil)
		if start-s.now > s.buffer {
			s.lost++
			return // the queue is full: dropped
		}
		s.busyUntil = start + int64(float64(size*8)*1e6/s.capacity)
		at = s.busyUntil + 1000 + s.delay
	}
	if s.jitter > 0 {
		at += s.rng.Int63n(s.jitter)
	}
	if s.stallEvery > 0 {
		// The receiver reads nothing during a stall, then all at once.
		if phase := at % s.stallEvery; phase < s.stallFor {
			at += s.stallFor - phase
		}
	}
	s.pending = append(s.pending, simArrival{seq, at})
}

// runProbe sends a probe of 1.5 Mbit/s on top of the media for 300 ms,
// then runs after µs more.
func (s *linkSim) runProbe(after int64) {
	s.b.startProbe(1, s.now)
	s.probe = 1_500_000
	s.run(300_000, nil)
	s.probe = 0
	s.b.endProbe(s.now, s.seq-1)
	s.run(after, nil)
}

// run advances d µs, sending and feeding back, and calls each (if not
// nil) after every feedback.
func (s *linkSim) run(d int64, each func()) {
	const tick = 1000
	end := s.now + d
	owedMedia, owedProbe := 0.0, 0.0
	for ; s.now < end; s.now += tick {
		if s.now%33_333 < tick { // a frame: its packets back to back
			owedMedia += s.media / 30 / 8
			for owedMedia >= 1200 {
				s.send(1200, uint16(s.b.probeCluster()))
				owedMedia -= 1200
			}
		}
		if s.probe > 0 && s.now%20_000 < tick {
			owedProbe += s.probe / 50 / 8
			for owedProbe >= paddingWireSize {
				s.send(paddingWireSize, uint16(s.b.probeCluster()))
				owedProbe -= paddingWireSize
			}
		}
		kept := s.pending[:0]
		for _, a := range s.pending {
			if a.at <= s.now {
				s.rec.Record(5, a.seq, a.at)
			} else {
				kept = append(kept, a)
			}
		}
		s.pending = kept
		if s.now%100_000 < tick {
			for _, p := range s.rec.BuildFeedbackPacket() {
				raw, err := p.Marshal()
				if err != nil {
					s.t.Fatal(err)
				}
				s.b.onRTCP(raw, s.now)
			}
			if each != nil {
				each()
			}
		}
	}
}

// probeCluster is the simulation's stand-in for bweInterceptor.cluster.
func (b *bwe) probeCluster() uint16 {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.probes.active {
		return b.probes.id
	}
	return 0
}

// TestTWCCParseMatchesPion: feedback built by pion's recorder (what pion
// clients send) decodes to the same statuses and arrival times as pion's
// own parser finds, with losses, reordering and large gaps.
func TestTWCCParseMatchesPion(t *testing.T) {
	rec := twcc.NewRecorder(1)
	rng := rand.New(rand.NewSource(7))
	at := int64(5_000_000)
	for seq := uint16(65000); seq != 400; seq++ { // wraps
		at += rng.Int63n(3000)
		if seq%50 == 0 {
			at += 90_000 // a large delta
		}
		if rng.Intn(10) == 0 {
			continue // lost
		}
		rec.Record(5, seq, at)
	}
	var fb twccFeedback
	n := 0
	for _, p := range rec.BuildFeedbackPacket() {
		raw, err := p.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		want := p.(*rtcp.TransportLayerCC)
		pkt, rest, ok := splitRTCP(raw)
		if !ok || len(rest) != 0 || !isTWCC(pkt) || !fb.parse(pkt) {
			t.Fatalf("feedback %d did not parse", n)
		}
		if fb.baseSeq != want.BaseSequenceNumber || len(fb.status) != int(want.PacketStatusCount) {
			t.Fatalf("base %d count %d, want %d %d", fb.baseSeq, len(fb.status), want.BaseSequenceNumber, want.PacketStatusCount)
		}
		if fb.refTime != int64(want.ReferenceTime)*64_000 {
			t.Fatalf("reference time %d µs, want %d×64 ms", fb.refTime, want.ReferenceTime)
		}
		d := 0
		var tm int64
		for i, st := range fb.status {
			if st == twccNotReceived {
				continue
			}
			tm += want.RecvDeltas[d].Delta
			d++
			if fb.arrival[i] != tm {
				t.Fatalf("packet %d arrives at %d µs, pion says %d", i, fb.arrival[i], tm)
			}
		}
		if d != len(want.RecvDeltas) {
			t.Fatalf("%d packets received, pion says %d", d, len(want.RecvDeltas))
		}
		n++
	}
	if n == 0 {
		t.Fatal("no feedback built")
	}
	// Malformed input is refused, never a panic.
	for _, bad := range [][]byte{{}, {0x8f, 205, 0, 1}, {0x8f, 205, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xff, 0xff, 0, 0, 0, 0}} {
		if p, _, ok := splitRTCP(bad); ok && fb.parse(p) {
			t.Fatalf("% x parsed", bad)
		}
	}
}

// TestBWECleanLinkHolds: an application-limited sender (1.6 Mbit/s under
// a 3 Mbit/s estimate) on a link with no queue, but a receiver that
// jitters by up to 8 ms and stalls for 40 ms every 2 s (a busy machine),
// keeps an estimate above what it sends.
func TestBWECleanLinkHolds(t *testing.T) {
	s := newLinkSim(t, 3_000_000)
	s.media = 1_600_000
	s.jitter = 8000
	s.stallEvery, s.stallFor = 2_000_000, 40_000
	low := uint64(1 << 62)
	s.run(30_000_000, func() {
		if s.now > 2_000_000 {
			low = min(low, s.b.estimate())
		}
	})
	t.Logf("estimate %d bit/s at the end, lowest %d; acknowledged %.0f bit/s", s.b.estimate(), low, s.b.acked.rate)
	if s.b.acked.rate < 1_400_000 {
		t.Fatalf("acknowledged rate %.0f bit/s: the feedback was not applied", s.b.acked.rate)
	}
	if low < 1_600_000*11/10 {
		t.Fatalf("the estimate fell to %d bit/s on a clean link carrying 1.6 Mbit/s", low)
	}
}

// TestBWEBottleneckAndProbe: a link narrowing to 700 kbit/s with a 100 ms
// queue under 1.6 Mbit/s of media brings the estimate near the capacity
// within 2 s; once the link widens, a 300 ms probe on top of 550 kbit/s
// of media brings it above 1.8 Mbit/s at once.
func TestBWEBottleneckAndProbe(t *testing.T) {
	s := newLinkSim(t, 3_000_000)
	s.media = 1_600_000
	s.run(3_000_000, nil)
	s.capacity, s.buffer = 700_000, 100_000
	start := s.now
	var took int64
	s.run(5_000_000, func() {
		if took == 0 && s.b.estimate() < 900_000 {
			took = s.now - start
			s.media = 550_000 // the allocator steps down
		}
	})
	if took == 0 || took > 2_000_000 {
		t.Fatalf("estimate %d bit/s 5 s into a 700 kbit/s bottleneck (fell below 900k after %d ms)", s.b.estimate(), took/1000)
	}
	t.Logf("below 900 kbit/s %d ms into the bottleneck; %d bit/s at 5 s", took/1000, s.b.estimate())
	if s.b.estimate() < 400_000 {
		t.Fatalf("the estimate fell to %d bit/s under a 700 kbit/s link", s.b.estimate())
	}
	// The link widens.
	s.capacity = 0
	s.run(1_000_000, nil)
	before := s.b.estimate()
	s.runProbe(400_000)
	t.Logf("estimate %d bit/s before the probe, %d after", before, s.b.estimate())
	if s.b.estimate() < 1_800_000 {
		t.Fatalf("estimate %d bit/s after a probe of 2 Mbit/s on a free link", s.b.estimate())
	}
}

// TestBWEProbeRaiseHolds: after a probe raised the estimate, a growing
// delay right after (a receiver that falls 130 ms behind while the
// allocator switches up: a busy machine) does not undo the raise before the
// higher layer could flow, and the raise is counted for the allocator.
func TestBWEProbeRaiseHolds(t *testing.T) {
	s := newLinkSim(t, 600_000)
	s.media = 550_000
	s.run(3_000_000, nil)
	raises := s.b.raises.Load()
	s.runProbe(300_000)
	if s.b.raises.Load() != raises+1 || s.b.estimate() < 1_800_000 {
		t.Fatalf("estimate %d bit/s, %d raises after a probe of 2 Mbit/s on a free link", s.b.estimate(), s.b.raises.Load()-raises)
	}
	before := ReadCounters().BWEDelayDecreases
	// The receiver falls behind: its reads lag more and more for 600 ms
	// (a queue that grows by 100 kbit/s), then it catches up.
	s.capacity, s.buffer = 450_000, 1_000_000
	low := uint64(1 << 62)
	s.run(600_000, func() { low = min(low, s.b.estimate()) })
	s.capacity = 0
	s.run(500_000, func() { low = min(low, s.b.estimate()) })
	t.Logf("lowest estimate %d bit/s while the receiver lagged, %d delay decreases", low, ReadCounters().BWEDelayDecreases-before)
	if low < 1_800_000 {
		t.Fatalf("a delay spike right after the probe lowered the estimate to %d bit/s", low)
	}
}

// TestBWEProbeIntoBottleneck: a probe that the link cannot carry does not
// raise the estimate.
func TestBWEProbeIntoBottleneck(t *testing.T) {
	s := newLinkSim(t, 600_000)
	s.media = 500_000
	s.capacity, s.buffer = 700_000, 100_000
	s.run(3_000_000, nil)
	before := s.b.estimate()
	s.runProbe(400_000)
	t.Logf("estimate %d bit/s before the probe, %d after", before, s.b.estimate())
	if s.b.estimate() > 800_000 {
		t.Fatalf("a probe into a 700 kbit/s link raised the estimate to %d", s.b.estimate())
	}
}

// TestBWELossCaps: random loss of 20% with no queue caps the estimate
// below what is sent.
func TestBWELossCaps(t *testing.T) {
	s := newLinkSim(t, 3_000_000)
	s.media = 1_600_000
	s.run(2_000_000, nil)
	s.loss = 0.2
	s.run(3_000_000, nil)
	t.Logf("estimate %d bit/s after 3 s of 20%% loss", s.b.estimate())
	if e := s.b.estimate(); e >= 1_600_000 {
		t.Fatalf("estimate %d bit/s after 3 s of 20%% loss", e)
	}
}

// BenchmarkBWEPerPacket is congestion control's cost per forwarded video
// packet: the interceptor's numbering and send record, the send-time stamp,
// and a sixteenth of a TWCC feedback (one per 16 packets, as at ~1.5
// Mbit/s with feedback every 100 ms) decoded and applied to the estimator.
func BenchmarkBWEPerPacket(b *testing.B) {
	const perFeedback = 16
	fbs := feedbacks(b, 1<<16/perFeedback, perFeedback)
	bi := newBWEInterceptor(3_000_000)
	w, h, payload := benchVideoWriter(bi)
	buf := make([]byte, 1500)
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := processCPU(b)
	for i := 0; i < b.N; i++ {
		h.Extensions = h.Extensions[:0] // as the down track's writer reuses its header
		h.SequenceNumber = uint16(i)
		if _, err := w.Write(h, payload, nil); err != nil {
			b.Fatal(err)
		}
		if i%perFeedback == perFeedback-1 {
			fb := fbs[(i/perFeedback)%len(fbs)]
			n := copy(buf, fb)
			// The clock the send times were stamped with.
			bi.est.onRTCP(buf[:n], clock.Micros())
		}
	}
	reportCPU(b, processCPU(b)-cpu0)
}

// benchVideoWriter is bi's writer of a VP8 stream (SSRC 5, the TWCC
// extension as ID 5) whose packets go nowhere, with the header and the
// 1100-byte payload a benchmark writes.
func benchVideoWriter(bi *bweInterceptor) (interceptor.RTPWriter, *rtp.Header, []byte) {
	ext := []interceptor.RTPHeaderExtension{{URI: sdp.TransportCCURI, ID: 5}}
	quiet := interceptor.RTPWriterFunc(func(*rtp.Header, []byte, interceptor.Attributes) (int, error) { return 0, nil })
	w := bi.BindLocalStream(&interceptor.StreamInfo{SSRC: 5, MimeType: "video/VP8", RTPHeaderExtensions: ext}, quiet)
	return w, &rtp.Header{Version: 2, SSRC: 5, PayloadType: 96}, make([]byte, 1100)
}

// TestBWEDoesNotAllocate: numbering, recording and applying feedback
// allocate nothing once warm; audio is not numbered.
func TestBWEDoesNotAllocate(t *testing.T) {
	bi := newBWEInterceptor(3_000_000)
	ext := []interceptor.RTPHeaderExtension{{URI: sdp.TransportCCURI, ID: 5}}
	var seen []*rtp.Header
	inner := interceptor.RTPWriterFunc(func(h *rtp.Header, p []byte, _ interceptor.Attributes) (int, error) {
		c := h.Clone()
		seen = append(seen, &c)
		return len(p), nil
	})
	video := bi.BindLocalStream(&interceptor.StreamInfo{SSRC: 1, MimeType: "video/VP8", RTPHeaderExtensions: ext}, inner)
	audio := bi.BindLocalStream(&interceptor.StreamInfo{SSRC: 2, MimeType: "audio/opus", RTPHeaderExtensions: ext}, inner)
	video2 := bi.BindLocalStream(&interceptor.StreamInfo{SSRC: 4, MimeType: "video/VP8", RTPHeaderExtensions: ext}, inner)
	_, _ = video.Write(&rtp.Header{Version: 2, SSRC: 1}, []byte{1}, nil)
	_, _ = audio.Write(&rtp.Header{Version: 2, SSRC: 2}, []byte{1}, nil)
	_, _ = video2.Write(&rtp.Header{Version: 2, SSRC: 4}, []byte{1}, nil)
	if len(seen) != 3 || seen[1].GetExtension(5) != nil {
		t.Fatal("the audio packet carries a transport-wide sequence number")
	}
	if a, b := seen[0].GetExtension(5), seen[2].GetExtension(5); len(a) != 2 || len(b) != 2 ||
		binary.BigEndian.Uint16(b) != binary.BigEndian.Uint16(a)+1 {
		t.Fatalf("sequence numbers %x then %x: want consecutive across the connection's streams", a, b)
	}
	if _, _, _, ok := bi.est.hist.get(1, clock.Micros()); !ok {
		t.Fatal("the second video packet is not in the send history")
	}

	quiet := interceptor.RTPWriterFunc(func(*rtp.Header, []byte, interceptor.Attributes) (int, error) { return 0, nil })
	w := bi.BindLocalStream(&interceptor.StreamInfo{SSRC: 5, MimeType: "video/VP8", RTPHeaderExtensions: ext}, quiet)
	rec := twcc.NewRecorder(1)
	h := &rtp.Header{Version: 2, SSRC: 5}
	payload := make([]byte, 1000)
	seq := uint16(3)
	at := int64(1_000_000)
	raw := make([]byte, 0, 1500)
	for range 200 { // warm: the feedback buffers reach their size
		h.Extensions = h.Extensions[:0]
		_, _ = w.Write(h, payload, nil)
		at += 700
		rec.Record(5, seq, at)
		seq++
	}
	for _, p := range rec.BuildFeedbackPacket() {
		b, _ := p.Marshal()
		raw = append(raw[:0], b...)
		bi.est.onRTCP(raw, at)
	}
	if n := testing.AllocsPerRun(200, func() {
		h.Extensions = h.Extensions[:0]
		_, _ = w.Write(h, payload, nil)
		bi.est.onRTCP(raw, at)
	}); n != 0 {
		t.Fatalf("%.1f allocations per packet", n)
	}
}

// TestSendHistory: a record is trusted only with its own stamp. A packet
// not yet stamped (its feedback read before the flusher stored the time)
// is unknown, though its slot holds the stamp of the packet with the same
// sequence number 65,536 packets earlier; a packet recorded over (2,048
// later) is forgotten; the send time survives unix µs beyond 48 bits and a
// flusher whose clock read came a little after the feedback's.
func TestSendHistory(t *testing.T) {
	var h sendHistory
	now := clock.Micros()
	h.record(7, 1200, 3)
	if _, _, _, ok := h.get(7, now); ok {
		t.Fatal("a packet never stamped has a send time")
	}
	h.stamp(7, now-5_000)
	size, cluster, sent, ok := h.get(7, now)
	if !ok || size != 1200 || cluster != 3 || sent != now-5_000 {
		t.Fatalf("got size %d, cluster %d, sent %d (%v), want 1200, 3, %d", size, cluster, sent, ok, now-5_000)
	}
	if _, _, sent, ok := h.get(7, now-300); !ok || sent != now-5_000 {
		t.Fatalf("stamped 4.7 ms after the feedback's clock read: sent %d (%v), want %d", sent, ok, now-5_000)
	}
	h.record(7+bweHistoryLen, 900, 0)
	if _, _, _, ok := h.get(7, now); ok {
		t.Fatal("a packet recorded over is still known")
	}
	// 65,536 packets later (30 s at ~2,000 packets/s): the same slot and
	// sequence number, recorded but not stamped yet.
	later := now + 30_000_000
	h.record(7, 1100, 0)
	if _, _, _, ok := h.get(7, later); ok {
		t.Fatal("a packet not yet stamped took the stamp of the one 65,536 packets before")
	}
	h.stamp(7, later-1_000)
	if _, _, sent, ok := h.get(7, later); !ok || sent != later-1_000 {
		t.Fatalf("after its stamp: sent %d (%v), want %d", sent, ok, later-1_000)
	}
}
