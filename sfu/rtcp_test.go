package sfu

import (
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

func TestNTPConversions(t *testing.T) {
	for _, ns := range []int64{0, 1_700_000_000_123_456_789, 1_999_999_999_999_999_999} {
		back := ntpToUnixNanos(unixNanosToNTP(ns))
		if d := back - ns; d < -1 || d > 1 {
			t.Fatalf("%d -> NTP -> %d", ns, back)
		}
	}
}

// srSim is a publisher with two simulcast layers, a clock 3.7 s ahead of
// the SFU's, a path of 20 ms plus jitter, and one down track, all on
// synthetic clocks (unix nanos, SFU time).
type srSim struct {
	t       *testing.T
	r       *Receiver
	d       *DownTrack
	w       *recordingWriter
	rng     *rand.Rand
	now     int64 // SFU clock
	bases   [2]uint32
	seqs    [2]uint16
	lastSR  int64
	written map[uint16]int64 // output seq -> capture time (SFU clock) of the frame
	wroteAt map[uint16]int64 // output seq -> when it was written (its arrival)
	lateOne int              // layer+1 whose first frame alone gets run's extra delay; 0 = every layer

	// The same publisher's audio: its own receiver and down track, the
	// same clock.
	clock  *pubClock
	ra     *Receiver
	da     *DownTrack
	wa     *recordingWriter
	aseq   uint16
	aCap   map[uint16]int64
	aWrote map[uint16]int64
}

const (
	srClockOffset = int64(3_700 * time.Millisecond) // publisher NTP = SFU time + this
	srMinDelay    = int64(20 * time.Millisecond)
	srFrame       = int64(time.Second / 30)
)

func newSRSim(t *testing.T) *srSim {
	s := &srSim{t: t, rng: rand.New(rand.NewPCG(1, 2)), now: 1_700_000_000_000_000_000,
		bases: [2]uint32{1000, 3_000_000_000}, seqs: [2]uint16{100, 40000}, written: map[uint16]int64{}, wroteAt: map[uint16]int64{}}
	s.r = newBenchReceiver(vp8Codec)
	s.d = NewDownTrack(s.r, "PA_sr")
	s.d.SetTarget(0)
	s.w = &recordingWriter{}
	if _, err := s.d.Bind(fakeContext{codecs: []webrtc.RTPCodecParameters{vp8Codec}, ssrc: 4242, w: s.w}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.d.Close)
	s.clock = &pubClock{}
	s.r.clock = s.clock
	s.ra = NewReceiver("TR_a", opusCodec, webrtc.RTPCodecTypeAudio, s.r.writeRTCP, s.r.log)
	s.ra.clock = s.clock
	s.da = NewDownTrack(s.ra, "PA_sr")
	s.wa = &recordingWriter{}
	if _, err := s.da.Bind(fakeContext{codecs: []webrtc.RTPCodecParameters{opusCodec}, ssrc: 5151, w: s.wa}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.da.Close)
	s.aCap, s.aWrote = map[uint16]int64{}, map[uint16]int64{}
	return s
}

// audioTS is the audio RTP timestamp of a capture instant (SFU clock).
func audioTS(capture int64) uint32 {
	pub := capture + srClockOffset
	return 77_777 + uint32(pub/1e9*48000+pub%1e9*48000/1e9)
}

// ts is a layer's RTP timestamp of a capture instant (SFU clock).
func (s *srSim) ts(layer int, capture int64) uint32 {
	pub := capture + srClockOffset
	return s.bases[layer] + uint32(pub/1e9*90000+pub%1e9*90000/1e9)
}

// run captures frames for d on both layers and delivers each layer's
// packets after the path delay plus up to jitter (extra on the first frame),
// with a sender report per layer every second.
func (s *srSim) run(d time.Duration, key bool, jitter, firstExtra int64) {
	key0, delta := benchPackets()
	end := s.now + int64(d)
	for first := true; s.now < end; first = false {
		capture := s.now
		for layer := 0; layer < 2; layer++ {
			delay := srMinDelay + s.rng.Int64N(jitter+1)
			if first && (s.lateOne == 0 || s.lateOne == layer+1) {
				delay += firstExtra
			}
			s.r.now.Store(capture + delay)
			payload := delta
			if first && key {
				payload = key0
			}
			hdr := &rtp.Header{Version: 2, SequenceNumber: s.seqs[layer], Timestamp: s.ts(layer, capture), SSRC: uint32(layer + 1)}
			s.seqs[layer]++
			before := len(s.w.hdrs)
			_ = s.d.WriteRTP(hdr, payload, int8(layer))
			s.d.flush(flushWait)
			if len(s.w.hdrs) > before {
				out := s.w.hdrs[len(s.w.hdrs)-1].SequenceNumber
				s.written[out], s.wroteAt[out] = capture, capture+delay
			}
		}
		adelay := srMinDelay + s.rng.Int64N(jitter+1)
		s.ra.now.Store(capture + adelay)
		before := len(s.wa.hdrs)
		_ = s.da.WriteRTP(&rtp.Header{Version: 2, SequenceNumber: s.aseq, Timestamp: audioTS(capture), SSRC: 9}, []byte{0x78, 1}, 0)
		s.da.flush(flushWait)
		s.aseq++
		if len(s.wa.hdrs) > before {
			out := s.wa.hdrs[len(s.wa.hdrs)-1].SequenceNumber
			s.aCap[out], s.aWrote[out] = capture, capture+adelay
		}
		if s.now-s.lastSR >= int64(time.Second) {
			s.lastSR = s.now
			ntp := unixNanosToNTP(s.now + srClockOffset)
			for layer := 0; layer < 2; layer++ {
				arrival := s.now + srMinDelay + s.rng.Int64N(jitter+1)
				s.d.sr.onSenderReport(int8(layer), ntp, s.ts(layer, s.now), arrival)
				s.clock.observe(arrival - ntpToUnixNanos(ntp)) // what Receiver.readRTCP does
			}
			arrival := s.now + srMinDelay + s.rng.Int64N(jitter+1)
			s.da.sr.onSenderReport(0, ntp, audioTS(s.now), arrival)
			s.clock.observe(arrival - ntpToUnixNanos(ntp))
		}
		s.now += srFrame
	}
}

// check compares the down track's report at now with the truth: the last
// forwarded frame's output timestamp advanced by the time since its capture
// (plus the path's minimum delay, common to all of a publisher's tracks).
// It also returns what pion's write-time mapping would have said.
func (s *srSim) check(what string) (video, audio, pionVideo, pionAudio float64) {
	s.t.Helper()
	one := func(d *DownTrack, w *recordingWriter, capt, wrote map[uint16]int64, clock int64) (float64, float64) {
		d.flush(flushWait)
		got, ok := d.senderReportRTP(s.now)
		if !ok {
			s.t.Fatalf("%s: no sender report mapping", what)
		}
		last := w.hdrs[len(w.hdrs)-1]
		want := last.Timestamp + uint32((s.now-capt[last.SequenceNumber]-srMinDelay)*clock/1e9)
		// pion: the last frame's timestamp at the time it was written.
		pion := last.Timestamp + uint32((s.now-wrote[last.SequenceNumber])*clock/1e9)
		ms := float64(clock) / 1000
		return float64(int32(got-want)) / ms, float64(int32(pion-want)) / ms
	}
	video, pionVideo = one(s.d, s.w, s.written, s.wroteAt, 90000)
	audio, pionAudio = one(s.da, s.wa, s.aCap, s.aWrote, 48000)
	return video, audio, pionVideo, pionAudio
}

// TestDownTrackSenderReportMapping: a publisher's audio and a simulcast
// video whose down track switches layers at a keyframe that arrives 40 ms
// late, pauses 3 s and resumes at a keyframe 35 ms late, every packet and
// report with 0-30 ms of jitter. The reports of both down tracks map RTP to
// time like the publisher's do, up to one shift common to both (the path's
// unknowable minimum delay): audio and video agree within 1 ms, and stay
// within the reports' jitter of the truth.
func TestDownTrackSenderReportMapping(t *testing.T) {
	s := newSRSim(t)
	type result struct {
		what               string
		v, a, pionV, pionA float64
	}
	var res []result
	check := func(what string) {
		v, a, pv, pa := s.check(what)
		res = append(res, result{what, v, a, pv, pa})
	}
	const jitter = int64(30 * time.Millisecond)
	s.run(2500*time.Millisecond, true, jitter, 0)
	check("layer 0")
	s.d.SetTarget(1)
	s.run(2500*time.Millisecond, true, jitter, int64(40*time.Millisecond))
	if s.d.Current() != 1 {
		t.Fatalf("did not switch to layer 1")
	}
	check("switched to layer 1 (keyframe 40 ms late)")
	s.d.SetPaused(true)
	s.run(3*time.Second, false, jitter, 0)
	s.d.SetPaused(false)
	s.run(1500*time.Millisecond, true, jitter, int64(35*time.Millisecond))
	check("paused 3 s, resumed (keyframe 35 ms late)")

	for _, r := range res {
		t.Logf("%-44s video %+6.2f ms, audio %+6.2f ms, A/V %+5.2f ms | pion's mapping: video %+6.2f, audio %+6.2f, A/V %+6.2f ms",
			r.what, r.v, r.a, r.v-r.a, r.pionV, r.pionA, r.pionV-r.pionA)
		if math.Abs(r.v-r.a) > 1 {
			t.Errorf("%s: audio and video reports disagree by %.2f ms, want within 1 ms", r.what, r.v-r.a)
		}
		if math.Abs(r.v) > float64(jitter)/1e6 || math.Abs(r.a) > float64(jitter)/1e6 {
			t.Errorf("%s: reports off the publisher's by more than the jitter", r.what)
		}
	}
}

// TestSenderReportInterceptor: the interceptor reports a down track's
// stream with the SFU's NTP time and the down track's mapping, and other
// streams as pion would (last frame's timestamp at its write time).
func TestSenderReportInterceptor(t *testing.T) {
	s := newSRSim(t)
	s.run(2*time.Second, true, 0, 0)
	now := time.Unix(0, s.now)
	f := &SenderReportInterceptorFactory{Now: func() time.Time { return now }}
	i, err := f.NewInterceptor("pc")
	if err != nil {
		t.Fatal(err)
	}
	sr := i.(*senderReports)
	nop := interceptor.RTPWriterFunc(func(h *rtp.Header, p []byte, _ interceptor.Attributes) (int, error) { return len(p), nil })
	down := sr.BindLocalStream(&interceptor.StreamInfo{SSRC: 4242, ClockRate: 90000}, nop)
	other := sr.BindLocalStream(&interceptor.StreamInfo{SSRC: 0x5eed0077, ClockRate: 48000}, nop)
	last := s.w.hdrs[len(s.w.hdrs)-1]
	_, _ = down.Write(&last, []byte{1}, nil)
	_, _ = other.Write(&rtp.Header{SSRC: 0x5eed0077, SequenceNumber: 1, Timestamp: 48000}, []byte{1, 2}, nil)
	now = now.Add(500 * time.Millisecond)
	reps := map[uint32]*rtcp.SenderReport{}
	for _, r := range sr.reports() {
		reps[r.SSRC] = r
	}
	want, _ := s.d.senderReportRTP(now.UnixNano())
	if r := reps[4242]; r == nil || r.RTPTime != want || ntpToUnixNanos(r.NTPTime)/1e6 != now.UnixNano()/1e6 || r.PacketCount != 1 {
		t.Fatalf("down track report %+v, want RTP %d at %v", r, want, now)
	}
	if r := reps[0x5eed0077]; r == nil || r.RTPTime != 48000+24000 || r.OctetCount != 2 {
		t.Fatalf("other stream's report %+v, want pion's mapping (RTP 72000)", r)
	}

	// A down track whose publisher has sent no report yet gets no report
	// (rather than a wrong one) until srFallbackAfter, then pion's mapping.
	fresh := NewDownTrack(newBenchReceiver(vp8Codec), "PA_new")
	if _, err := fresh.Bind(fakeContext{codecs: []webrtc.RTPCodecParameters{vp8Codec}, ssrc: 6161, w: &recordingWriter{}}); err != nil {
		t.Fatal(err)
	}
	defer fresh.Close()
	key, _ := benchPackets()
	_ = fresh.WriteRTP(&rtp.Header{Version: 2, SequenceNumber: 1, Timestamp: 90000}, key, 0)
	fw := sr.BindLocalStream(&interceptor.StreamInfo{SSRC: 6161, ClockRate: 90000}, nop)
	seq, ts, _ := fresh.munger.Last()
	_, _ = fw.Write(&rtp.Header{SSRC: 6161, SequenceNumber: seq, Timestamp: ts}, key, nil)
	has := func() bool {
		for _, r := range sr.reports() {
			if r.SSRC == 6161 {
				return true
			}
		}
		return false
	}
	if has() {
		t.Fatalf("a down track without its publisher's report was reported at once")
	}
	now = now.Add(srFallbackAfter)
	if !has() {
		t.Fatalf("no fallback report after %v", srFallbackAfter)
	}
	if err := sr.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestLayerSwitchKeepsCaptureTimeline: the keyframe of the layer switched
// to arrives 150 ms later than the old layer's frames (a stalled reader, a
// queue). The new layer's packets still sit on the output timeline at
// their capture time, so the sender report a receiver holds from before
// the switch maps them right: the switch takes its timestamp offset from
// the publisher's reports of both layers, not from arrival times (which
// put the whole new layer 150 ms late against audio until the next report).
func TestLayerSwitchKeepsCaptureTimeline(t *testing.T) {
	s := newSRSim(t)
	const jitter = int64(5 * time.Millisecond)
	s.run(2500*time.Millisecond, true, jitter, 0)
	srAt := s.now // the last report before the switch
	srRTP, ok := s.d.senderReportRTP(srAt)
	if !ok {
		t.Fatal("no sender report mapping")
	}
	before := len(s.w.hdrs)
	s.lateOne = 2
	s.d.SetTarget(1)
	s.run(600*time.Millisecond, true, jitter, int64(150*time.Millisecond))
	if s.d.Current() != 1 {
		t.Fatal("did not switch to layer 1")
	}
	worst, n := 0.0, 0
	for _, h := range s.w.hdrs[before:] {
		capture, ok := s.written[h.SequenceNumber]
		if !ok {
			continue
		}
		at := srAt + int64(int32(h.Timestamp-srRTP))*1e9/90000 - srMinDelay
		worst = max(worst, math.Abs(float64(at-capture))/1e6)
		n++
	}
	t.Logf("%d packets after the switch: up to %.2f ms off their capture time through the report from before it", n, worst)
	if n < 10 || worst > float64(jitter)/1e6+1 {
		t.Errorf("%d packets, up to %.2f ms off their capture time, want within the %v jitter", n, worst, time.Duration(jitter))
	}
}
