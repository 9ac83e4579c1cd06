package sfu

import (
	"sync"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
	"github.com/starling-rtc/starling/internal/clock"
)

// Sender reports for down tracks.
//
// pion's report interceptor builds a sender report from when each frame's
// first packet was written: for an SFU that is when the packet *arrived*,
// so every delay between the publisher and the SFU (pacing, queues, a
// slower path for video than for audio) ends up in the NTP <-> RTP mapping
// and breaks the subscriber's lip sync (server/senderreport_test.go: a
// video path 30 ms slower than audio's skews A/V by 30-35 ms). The
// publisher's own reports say when each frame was captured. A down track
// keeps them (OnSenderReport, per layer) and maps "now" to an output
// timestamp through the report of the layer it forwards and its current
// rewriting offset; senderReports sends that, with the SFU's own NTP time
// (so receivers' RTT from LSR/DLSR stays right). Publisher clock -> SFU
// clock is the smallest (arrival - NTP) over the recent reports: the
// clock offset plus the shortest one-way delay, the same for a
// publisher's audio and video.

// srOffsets is how many recent reports the clock offset is the minimum of.
const srOffsets = 8

// srState is what a down track knows of its publisher's sender reports.
type srState struct {
	mu      sync.Mutex
	layers  [MaxLayers]srLayer
	offsets [srOffsets]int64 // arrival - NTP, nanos, of the latest reports (any layer)
	n       int
}

type srLayer struct {
	valid bool
	ntp   int64 // publisher NTP time of the report, unix nanos
	rtp   uint32
}

// ntpToUnixNanos converts a 64-bit NTP timestamp to unix nanoseconds.
func ntpToUnixNanos(ntp uint64) int64 {
	const ntpEpochOffset = 2208988800 // seconds from 1900 to 1970
	secs := int64(ntp>>32) - ntpEpochOffset
	frac := int64((ntp & 0xffffffff) * 1e9 >> 32)
	return secs*1e9 + frac
}

// unixNanosToNTP converts unix nanoseconds to a 64-bit NTP timestamp.
func unixNanosToNTP(ns int64) uint64 {
	const ntpEpochOffset = 2208988800
	secs := uint64(ns/1e9 + ntpEpochOffset)
	frac := uint64(ns%1e9) << 32 / 1e9
	return secs<<32 | frac
}

// onSenderReport records a publisher's report for a layer, received at
// arrival (unix nanos).
func (s *srState) onSenderReport(layer int8, ntp uint64, rtpTime uint32, arrival int64) {
	if layer < 0 || layer >= MaxLayers {
		return
	}
	t := ntpToUnixNanos(ntp)
	s.mu.Lock()
	s.layers[layer] = srLayer{valid: true, ntp: t, rtp: rtpTime}
	s.offsets[s.n%srOffsets] = arrival - t
	s.n++
	s.mu.Unlock()
}

// inputRTPAt maps an SFU time (unix nanos) to the publisher's RTP time of
// a layer through its latest report; ok=false without one. offset is the
// publisher's clock offset when known (shared by all its tracks), else the
// track's own reports give it.
func (s *srState) inputRTPAt(layer int8, now int64, clockRate uint32, offset int64, haveOffset bool) (uint32, bool) {
	if layer < 0 || layer >= MaxLayers || clockRate == 0 {
		return 0, false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	l := s.layers[layer]
	if !l.valid || s.n == 0 {
		return 0, false
	}
	if !haveOffset {
		offset = s.offsets[0]
		for i := 1; i < min(s.n, srOffsets); i++ {
			offset = min(offset, s.offsets[i])
		}
	}
	// now on the publisher's clock, then as RTP units past the report.
	elapsed := now - offset - l.ntp
	ticks := elapsed / 1e9 * int64(clockRate)
	ticks += elapsed % 1e9 * int64(clockRate) / 1e9
	return l.rtp + uint32(ticks), true
}

// alignTS is the output timestamp for a packet of layer to (input
// timestamp ts) that keeps the output timeline on capture time across a
// switch from layer from, whose last packet (input lastIn) went out as
// lastOut: ts's capture time from to's report, as from's input timestamp
// through from's report, plus from's rewriting offset. ok=false without a
// report for both layers.
func (s *srState) alignTS(from, to int8, ts, lastIn, lastOut uint32, clockRate uint32) (uint32, bool) {
	if from < 0 || from >= MaxLayers || to < 0 || to >= MaxLayers || clockRate == 0 {
		return 0, false
	}
	s.mu.Lock()
	a, b := s.layers[from], s.layers[to]
	s.mu.Unlock()
	if !a.valid || !b.valid {
		return 0, false
	}
	// capture time of ts (publisher NTP nanos), then as from's RTP time
	capture := b.ntp + int64(int32(ts-b.rtp))*1e9/int64(clockRate)
	elapsed := capture - a.ntp
	ticks := elapsed/1e9*int64(clockRate) + elapsed%1e9*int64(clockRate)/1e9
	return a.rtp + uint32(ticks) + (lastOut - lastIn), true
}

// senderReportRTP is the output RTP timestamp that corresponds to now
// (unix nanos) for this down track, from its publisher's reports; ok=false
// until it has forwarded something of a layer that has a report.
func (d *DownTrack) senderReportRTP(now int64) (uint32, bool) {
	d.mu.Lock()
	layer, haveTS, off := d.current, d.haveTS, d.tsOut-d.tsIn
	d.mu.Unlock()
	if !haveTS || layer < 0 {
		return 0, false
	}
	var offset int64
	var haveOffset bool
	if c, ok := d.src().(ClockSource); ok {
		offset, haveOffset = c.PublisherClockOffset()
	}
	in, ok := d.sr.inputRTPAt(layer, now, d.codec.ClockRate, offset, haveOffset)
	if !ok {
		return 0, false
	}
	return in + off, true
}

// pubClock estimates a publisher's clock against the SFU's: the smallest
// (arrival - NTP time) over its recent sender reports, of all its tracks, so
// that its audio and video map to SFU time with the very same offset.
type pubClock struct {
	mu      sync.Mutex
	offsets [pubClockWindow]int64
	n       int
	refs    int
}

// pubClockWindow: about 8 s of reports for a publisher with audio and
// three video layers (one report per second each).
const pubClockWindow = 32

func (c *pubClock) observe(offset int64) {
	c.mu.Lock()
	c.offsets[c.n%pubClockWindow] = offset
	c.n++
	c.mu.Unlock()
}

func (c *pubClock) offset() (int64, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n == 0 {
		return 0, false
	}
	o := c.offsets[0]
	for i := 1; i < min(c.n, pubClockWindow); i++ {
		o = min(o, c.offsets[i])
	}
	return o, true
}

// pubClocks holds one clock per publisher connection, keyed by its DTLS
// transport (shared by every receiver of the connection).
var pubClocks = struct {
	sync.Mutex
	m map[any]*pubClock
}{m: map[any]*pubClock{}}

// attachClock joins the receiver to its publisher's clock; call with r.mu
// held, before the layer's RTCP reader starts.
func (r *Receiver) attachClock(recv *webrtc.RTPReceiver) {
	if r.clock != nil || recv == nil || recv.Transport() == nil {
		return
	}
	key := any(recv.Transport())
	pubClocks.Lock()
	c := pubClocks.m[key]
	if c == nil {
		c = &pubClock{}
		pubClocks.m[key] = c
	}
	c.refs++
	pubClocks.Unlock()
	r.clock, r.clockOf = c, key
}

func (r *Receiver) releaseClock() {
	r.mu.Lock()
	c, key := r.clock, r.clockOf
	r.clockOf = nil
	r.mu.Unlock()
	if c == nil || key == nil {
		return
	}
	pubClocks.Lock()
	if c.refs--; c.refs <= 0 && pubClocks.m[key] == c {
		delete(pubClocks.m, key)
	}
	pubClocks.Unlock()
}

// observeSR feeds a publisher report's clock offset.
func (r *Receiver) observeSR(ntp uint64, arrival int64) {
	if r.clock != nil {
		r.clock.observe(arrival - ntpToUnixNanos(ntp))
	}
}

// ClockSource is a source that knows its publisher's clock: the offset
// (this node's time - the publisher's NTP time, nanos) shared by all the
// publisher's tracks, so their sender reports map to one clock (lip sync).
// *Receiver is one; the cluster relay's imported tracks are others.
type ClockSource interface {
	PublisherClockOffset() (int64, bool)
}

// PublisherClockOffset is the publisher's clock offset (SFU time - NTP
// time, nanos), shared by all its tracks.
func (r *Receiver) PublisherClockOffset() (int64, bool) {
	if r.clock == nil {
		return 0, false
	}
	return r.clock.offset()
}

// downTracksBySSRC finds the down track behind a local stream: the
// sender-report interceptor only knows the SSRC.
var downTracksBySSRC = struct {
	sync.Mutex
	m map[uint32][]*DownTrack
}{m: map[uint32][]*DownTrack{}}

func registerDownTrack(d *DownTrack, ssrc uint32) {
	downTracksBySSRC.Lock()
	defer downTracksBySSRC.Unlock()
	for _, x := range downTracksBySSRC.m[ssrc] {
		if x == d {
			return
		}
	}
	downTracksBySSRC.m[ssrc] = append(downTracksBySSRC.m[ssrc], d)
}

func unregisterDownTrack(d *DownTrack, ssrc uint32) {
	downTracksBySSRC.Lock()
	defer downTracksBySSRC.Unlock()
	list := downTracksBySSRC.m[ssrc]
	for i, x := range list {
		if x == d {
			list = append(list[:i:i], list[i+1:]...)
			break
		}
	}
	if len(list) == 0 {
		delete(downTracksBySSRC.m, ssrc)
	} else {
		downTracksBySSRC.m[ssrc] = list
	}
}

// lookupDownTrack returns the down track with this SSRC whose last sent
// sequence number is lastSeq (SSRCs are random per connection, so two
// subscribers may share one).
func lookupDownTrack(ssrc uint32, lastSeq uint16) *DownTrack {
	downTracksBySSRC.Lock()
	list := append([]*DownTrack(nil), downTracksBySSRC.m[ssrc]...)
	downTracksBySSRC.Unlock()
	if len(list) == 1 {
		return list[0]
	}
	for _, d := range list {
		d.mu.Lock()
		match := false
		if d.munger != nil {
			seq, _, ok := d.munger.Last()
			match = ok && seq == lastSeq
		}
		d.mu.Unlock()
		if match {
			return d
		}
	}
	return nil
}

// SenderReportInterceptorFactory makes the interceptor that sends down
// tracks' sender reports; it replaces pion's report.SenderInterceptor on an
// SFU (register pion's report.ReceiverInterceptor alone, then this). Streams
// that are not down tracks, or down tracks without a publisher report yet,
// get pion's mapping: the last frame's timestamp at the time it was written.
type SenderReportInterceptorFactory struct {
	Interval time.Duration    // 0 = 1 s
	Now      func() time.Time // nil = clock.Wall
}

// NewInterceptor makes one per peer connection.
func (f *SenderReportInterceptorFactory) NewInterceptor(string) (interceptor.Interceptor, error) {
	s := &senderReports{interval: f.Interval, now: f.Now, streams: map[uint32]*srStream{}, done: make(chan struct{})}
	if s.interval <= 0 {
		s.interval = time.Second
	}
	if s.now == nil {
		// NTP times from the wall clock, the mapping to RTP time on the
		// step-free clock the publishers' reports were received on
		s.now, s.mono = clock.Wall, clock.Nanos
	}
	return s, nil
}

type senderReports struct {
	mono func() int64 // step-free clock for the RTP mapping; nil = now's unix time
	interceptor.NoOp
	interval time.Duration
	now      func() time.Time

	mu      sync.Mutex
	streams map[uint32]*srStream
	started bool
	done    chan struct{}
	closed  bool
	wg      sync.WaitGroup
}

// srStream is pion's per-stream bookkeeping, for the fallback and counts.
type srStream struct {
	ssrc      uint32
	clockRate uint32
	mu        sync.Mutex
	firstAt   time.Time
	lastTS    uint32
	lastAt    time.Time
	lastSeq   uint16
	packets   uint32
	octets    uint32
	mapped    bool // a report went out with the publisher's mapping
}

// srFallbackAfter: a down track with no publisher report to map through
// sends no report at all for this long (a receiver without a report just
// does not sync yet; a wrong one makes it sync wrong). After a layer
// switch to a layer without a report yet, the previous report stays good
// enough: the rewriting continued the timeline.
const srFallbackAfter = 5 * time.Second

func (s *senderReports) BindLocalStream(info *interceptor.StreamInfo, writer interceptor.RTPWriter) interceptor.RTPWriter {
	st := &srStream{ssrc: info.SSRC, clockRate: info.ClockRate}
	s.mu.Lock()
	s.streams[info.SSRC] = st
	s.mu.Unlock()
	// pion passes no attributes; the estimator inside would make a map per
	// packet to note the TWCC extension id. One reused map per stream (one
	// writer goroutine each) spares that allocation.
	attrs := interceptor.Attributes{}
	return interceptor.RTPWriterFunc(func(h *rtp.Header, payload []byte, a interceptor.Attributes) (int, error) {
		if a == nil {
			clear(attrs)
			a = attrs
		}
		if h.SSRC == info.SSRC {
			st.mu.Lock()
			if st.packets == 0 {
				st.firstAt = s.now()
			}
			if st.packets == 0 || h.Timestamp != st.lastTS {
				st.lastTS, st.lastAt = h.Timestamp, s.now()
			}
			st.lastSeq = h.SequenceNumber
			st.packets++
			st.octets += uint32(len(payload))
			st.mu.Unlock()
		}
		return writer.Write(h, payload, a)
	})
}

func (s *senderReports) UnbindLocalStream(info *interceptor.StreamInfo) {
	s.mu.Lock()
	delete(s.streams, info.SSRC)
	s.mu.Unlock()
}

func (s *senderReports) BindRTCPWriter(writer interceptor.RTCPWriter) interceptor.RTCPWriter {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.started && !s.closed {
		s.started = true
		s.wg.Add(1)
		go s.loop(writer)
	}
	return writer
}

func (s *senderReports) Close() error {
	s.mu.Lock()
	if !s.closed {
		s.closed = true
		close(s.done)
	}
	s.mu.Unlock()
	s.wg.Wait()
	return nil
}

func (s *senderReports) loop(w interceptor.RTCPWriter) {
	defer s.wg.Done()
	timer := time.NewTicker(s.interval)
	defer timer.Stop()
	for {
		select {
		case <-s.done:
			return
		case <-timer.C:
		}
		for _, sr := range s.reports() {
			if _, err := w.Write([]rtcp.Packet{sr}, interceptor.Attributes{}); err != nil {
				break
			}
		}
	}
}

// reports builds a sender report for every stream that has sent something.
func (s *senderReports) reports() []*rtcp.SenderReport {
	s.mu.Lock()
	streams := make([]*srStream, 0, len(s.streams))
	for _, st := range s.streams {
		streams = append(streams, st)
	}
	s.mu.Unlock()
	// Both clocks read together: a stall between the NTP time and the RTP
	// mapping's instant would put that stall into every receiver's lip sync.
	now := s.now()
	mono := now.UnixNano() // a test's clock
	if s.mono != nil {
		mono = s.mono()
	}
	out := make([]*rtcp.SenderReport, 0, len(streams))
	for _, st := range streams {
		st.mu.Lock()
		if st.packets == 0 {
			st.mu.Unlock()
			continue
		}
		sr := &rtcp.SenderReport{
			SSRC: st.ssrc, NTPTime: unixNanosToNTP(now.UnixNano()),
			RTPTime:     st.lastTS + uint32(now.Sub(st.lastAt).Seconds()*float64(st.clockRate)),
			PacketCount: st.packets, OctetCount: st.octets,
		}
		lastSeq, mapped, age := st.lastSeq, st.mapped, now.Sub(st.firstAt)
		st.mu.Unlock()
		if d := lookupDownTrack(st.ssrc, lastSeq); d != nil {
			ts, ok := d.senderReportRTP(mono)
			switch {
			case ok:
				sr.RTPTime = ts
				st.mu.Lock()
				st.mapped = true
				st.mu.Unlock()
			case mapped || age < srFallbackAfter:
				continue
			}
		}
		out = append(out, sr)
	}
	return out
}
