package server_test

import (
	"encoding/json"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
	"github.com/starling-rtc/starling/client"
	"github.com/starling-rtc/starling/config"
	"github.com/starling-rtc/starling/protocol"
	"github.com/starling-rtc/starling/sfu"
)

// throttle drops incoming RTP beyond a rate, at the subscriber's own end,
// before its congestion-control feedback sees the packets: to the SFU it
// looks like a narrow downlink. It counts the padding-only packets (the
// probes) that reach it, before it drops any.
type throttle struct {
	interceptor.NoOp
	limit   atomic.Int64 // bits/s; 0 = no limit
	padding atomic.Int64 // padding-only packets received
	mu      sync.Mutex
	tokens  float64
	last    time.Time
}

func (t *throttle) NewInterceptor(string) (interceptor.Interceptor, error) { return t, nil }

func (t *throttle) allow(n int) bool {
	limit := t.limit.Load()
	if limit == 0 {
		return true
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	now := time.Now()
	t.tokens += now.Sub(t.last).Seconds() * float64(limit) / 8
	t.last = now
	if burst := float64(limit) / 8 / 10; t.tokens > burst {
		t.tokens = burst // 100 ms of burst
	}
	if t.tokens < float64(n) {
		return false
	}
	t.tokens -= float64(n)
	return true
}

func (t *throttle) BindRemoteStream(_ *interceptor.StreamInfo, r interceptor.RTPReader) interceptor.RTPReader {
	return interceptor.RTPReaderFunc(func(b []byte, a interceptor.Attributes) (int, interceptor.Attributes, error) {
		for {
			n, attr, err := r.Read(b, a)
			if err == nil && paddingOnly(b[:n]) {
				t.padding.Add(1)
			}
			if err != nil || t.allow(n) {
				return n, attr, err
			}
		}
	})
}

// paddingOnly reports whether an RTP packet carries padding and nothing
// else (a bandwidth probe's packet).
func paddingOnly(b []byte) bool {
	var h rtp.Header
	hl, err := h.Unmarshal(b)
	return err == nil && h.Padding && len(b) > hl && hl+int(b[len(b)-1]) == len(b)
}

// withBWE turns bandwidth estimation on (the test harness turns it off).
// A test that uses it is a timing test of groupCongestion (sched_test.go):
// the estimator's counters are the process's, and the congestion tests
// read them as their own.
func withBWE(c *config.Config) { c.RTC.CongestionControl = true }

func lastUpdate(c *client.Client, trackID string) protocol.SubscriptionUpdatedParams {
	var last protocol.SubscriptionUpdatedParams
	for _, e := range c.Events() {
		var u protocol.SubscriptionUpdatedParams
		if e.Method == protocol.NotifySubscriptionUpdated && json.Unmarshal(e.Params, &u) == nil && u.TrackID == trackID {
			last = u
		}
	}
	return last
}

// shaper is a bottleneck with a queue, at the subscriber's own end: a
// token bucket at limit bits/s in front of the default interceptors, whose
// packets wait up to 100 ms for their turn and are dropped beyond. To the
// SFU it looks like a narrow downlink with a router's buffer: first the
// delay grows, then packets are lost.
type shaper struct {
	interceptor.NoOp
	limit    atomic.Int64  // bits/s; 0 = no limit
	buffer   time.Duration // the queue's depth; 0 = 100 ms
	dropped  atomic.Int64
	done     chan struct{} // closed with the connection
	once     sync.Once
	mu       sync.Mutex
	nextFree time.Time // when the bottleneck can start on the next packet
}

func (s *shaper) NewInterceptor(string) (interceptor.Interceptor, error) {
	s.once.Do(func() { s.done = make(chan struct{}) })
	return s, nil
}

// Close ends the shaper's goroutines with the connection.
func (s *shaper) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	select {
	case <-s.done:
	default:
		close(s.done)
	}
	return nil
}

// admit returns when a packet of n bytes leaves the bottleneck, or false
// if the queue holds more than its buffer already.
func (s *shaper) admit(n int) (time.Time, bool) {
	limit := s.limit.Load()
	now := time.Now()
	if limit == 0 {
		return now, true
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	start := s.nextFree
	if start.Before(now) {
		start = now
	}
	buffer := s.buffer
	if buffer == 0 {
		buffer = 100 * time.Millisecond
	}
	if start.Sub(now) > buffer {
		s.dropped.Add(1)
		return time.Time{}, false
	}
	s.nextFree = start.Add(time.Duration(float64(n*8) / float64(limit) * float64(time.Second)))
	return s.nextFree, true
}

type shapedPacket struct {
	b    []byte
	attr interceptor.Attributes
	err  error
	at   time.Time // when it leaves the bottleneck
}

// BindRemoteStream reads the stream eagerly (a packet waits in the
// bottleneck's queue, not unread in pion's buffer, so the queue limit
// holds) and releases each packet at its time.
func (s *shaper) BindRemoteStream(_ *interceptor.StreamInfo, r interceptor.RTPReader) interceptor.RTPReader {
	queued := make(chan shapedPacket, 4096)
	out := make(chan shapedPacket)
	go func() {
		defer close(queued)
		for {
			b := make([]byte, 1500)
			n, attr, err := r.Read(b, nil)
			p := shapedPacket{err: err}
			if err == nil {
				at, ok := s.admit(n)
				if !ok {
					continue
				}
				p = shapedPacket{b: b[:n], attr: attr, at: at}
			}
			select {
			case queued <- p:
			case <-s.done:
				return
			}
			if err != nil {
				return
			}
		}
	}()
	go func() {
		defer close(out)
		for p := range queued {
			if d := time.Until(p.at); d > 0 {
				select {
				case <-time.After(d):
				case <-s.done:
					return
				}
			}
			select {
			case out <- p:
			case <-s.done:
				return
			}
			if p.err != nil {
				return
			}
		}
	}()
	return interceptor.RTPReaderFunc(func(b []byte, _ interceptor.Attributes) (int, interceptor.Attributes, error) {
		p, ok := <-out
		if !ok {
			return 0, nil, io.EOF
		}
		if p.err != nil {
			return 0, nil, p.err
		}
		return copy(b, p.b), p.attr, nil
	})
}

// bottleneck is a subscriber-side limit a test can set and lift.
type bottleneck interface {
	interceptor.Factory
	set(bitsPerSecond int64)
}

func (t *throttle) set(v int64) { t.limit.Store(v) }
func (s *shaper) set(v int64)   { s.limit.Store(v) }

// TestCongestionSwitchesDown: a subscriber whose downlink narrows to 700
// kbit/s (its packets beyond the rate dropped at its own end) is moved to
// a lower layer and told why, while another stays on high throughout;
// when the downlink widens again, a probe finds the room and it returns to
// high.
func TestCongestionSwitchesDown(t *testing.T) {
	// A timing test of the congestion group (sched_test.go): congestion
	// control reads a CPU starved by other tests as a congested network
	// (with light tests around it, the unthrottled subscriber was moved
	// for bandwidth on a busy machine), so few at once. The estimator
	// counters it reads are its server's (sfu.Engine.BWECounters), not
	// the process's: the group's tests need not run one at a time.
	timingTest(t, groupCongestion)
	testBottleneck(t, "bwe", &throttle{})
}

// TestCongestionShapedQueue is TestCongestionSwitchesDown with a
// bottleneck that queues (a token bucket with a 100 ms buffer) before it
// drops: the delay-based estimator sees the queue grow.
func TestCongestionShapedQueue(t *testing.T) {
	timingTest(t, groupCongestion) // see TestCongestionSwitchesDown
	testBottleneck(t, "bwe-shaped", &shaper{})
}

func testBottleneck(t *testing.T, room string, b bottleneck) {
	srv := startServer(t, withBWE)
	api, err := client.LoopbackAPIWith([]interceptor.Factory{b})
	if err != nil {
		t.Fatal(err)
	}
	slow := join(t, srv, room, "slow", func(o *client.Options) { o.API = api })
	vSlow := watchVideo(slow)
	fast := join(t, srv, room, "fast")
	vFast := watchVideo(fast)
	pub := join(t, srv, room, "camera")
	f := publishSimulcast(t, pub, 1, 2, 6) // ~1100-byte packets per frame: ~0.25, 0.5, 1.6 Mbit/s
	id := f.published.ID
	vSlow.waitHeight(t, 10*time.Second, 720)
	vFast.waitHeight(t, 10*time.Second, 720)
	// Judged from here on: before it, either subscriber may have started
	// on a lower layer (the high layer's first keyframe not there yet, on
	// a busy machine) and moved up.
	fastSizesBefore, fastBefore := vFast.snapshot()
	// The server's own estimator counters: other servers' congestion
	// tests run beside this one.
	before := srv.Engine().BWECounters()
	tapped := before.FeedbackTapped

	stalled := meterStalls(t) // this process's longest stall, for the unthrottled subscriber's check
	b.set(700_000)
	start := time.Now()
	var told time.Duration
	waitFor(t, 15*time.Second, "the throttled subscriber moved down for bandwidth", func() bool {
		// Down a layer, or paused when even low does not fit: either
		// way, told why.
		u := lastUpdate(slow, id)
		if told == 0 && u.Reason == sfu.ReasonBandwidth {
			told = time.Since(start)
		}
		s, _ := vSlow.snapshot()
		return u.Reason == sfu.ReasonBandwidth && u.Layer != protocol.QualityHigh &&
			(u.Layer == protocol.QualityPaused || (len(s) > 0 && s[len(s)-1] < 720))
	})
	t.Logf("switched down after the downlink narrowed to 700 kbit/s: told %v, lower keyframe at %v: %+v",
		told, time.Since(start), lastUpdate(slow, id))
	// The feedback that showed it came off the batched socket
	// (sfu/rtcptap.go), not through pion's receive path.
	if n := srv.Engine().BWECounters().FeedbackTapped; n <= tapped {
		t.Fatalf("no feedback read off the socket during the bottleneck (%d before, %d after)", tapped, n)
	}

	b.set(0)
	start = time.Now()
	vSlow.waitHeight(t, 60*time.Second, 720)
	t.Logf("recovered to high %v after the bottleneck was lifted", time.Since(start))
	// Probes send padding, and /metrics counts it
	// (starling_bwe_padding_packets_total).
	after := srv.Engine().BWECounters()
	t.Logf("%d probes, %d padding packets", after.Probes-before.Probes, after.PaddingSent-before.PaddingSent)
	if after.Probes > before.Probes && after.PaddingSent == before.PaddingSent {
		t.Fatalf("%d probes ran but no padding packet was counted", after.Probes-before.Probes)
	}

	// The other subscriber was untouched: never moved for bandwidth,
	// every keyframe it got was high's, and its video kept coming. Unless
	// this whole process was stopped long enough for its own estimator to
	// read a queue (CPU starved by two busy loops and other tests: stalls
	// of 0.2-1.3 s where an idle machine has a few ms; the unthrottled
	// subscriber was moved for bandwidth, or its high layer was silent
	// for a second and it got medium's keyframe): then a move is logged.
	stall := stalled()
	t.Logf("this process's longest stall since the bottleneck: %v", stall.Round(time.Millisecond))
	excuse := func(format string, args ...any) {
		t.Helper()
		if stall >= stallExcuses {
			t.Logf(format+" (this process stalled %v: not judged)", append(args, stall.Round(time.Millisecond))...)
			return
		}
		t.Fatalf(format+" (this process's longest stall %v)", append(args, stall.Round(time.Millisecond))...)
	}
	for _, e := range fast.Events() {
		var u protocol.SubscriptionUpdatedParams
		if e.Method == protocol.NotifySubscriptionUpdated && json.Unmarshal(e.Params, &u) == nil &&
			u.TrackID == id && u.Reason == sfu.ReasonBandwidth {
			excuse("the unthrottled subscriber was moved for bandwidth: %+v", u)
		}
	}
	sizes, fastAfter := vFast.snapshot()
	for _, h := range sizes[len(fastSizesBefore):] {
		if h != 720 {
			excuse("the unthrottled subscriber got a %dp keyframe: %v", h, sizes)
			break
		}
	}
	if fastAfter <= fastBefore {
		t.Fatal("the unthrottled subscriber's video stopped")
	}
}

// stallExcuses is how long a stop of the whole test process excuses the
// unthrottled subscriber's moves in testBottleneck: a delay-based
// estimator reads a 100 ms jump in its packets' delay as a queue.
const stallExcuses = 100 * time.Millisecond

// noTWCCAPI is a client API that negotiates NACK and RTCP reports but not
// transport-wide congestion control, with the throttle first in the chain.
func noTWCCAPI(t *testing.T, th *throttle) *webrtc.API {
	api, err := client.LoopbackAPIWith([]interceptor.Factory{th},
		webrtc.ConfigureNack,
		func(_ *webrtc.MediaEngine, ir *interceptor.Registry) error { return webrtc.ConfigureRTCPReports(ir) })
	if err != nil {
		t.Fatal(err)
	}
	return api
}

// TestCongestionWithoutTWCC: a client that does not negotiate TWCC is still
// moved down when its receiver reports show loss.
func TestCongestionWithoutTWCC(t *testing.T) {
	timingTest(t, groupCongestion) // see TestCongestionSwitchesDown
	srv := startServer(t, withBWE)
	th := &throttle{}
	slow := join(t, srv, "bwe-rr", "slow", func(o *client.Options) { o.API = noTWCCAPI(t, th) })
	vSlow := watchVideo(slow)
	pub := join(t, srv, "bwe-rr", "camera")
	f := publishSimulcast(t, pub, 1, 2, 6)
	id := f.published.ID
	vSlow.waitHeight(t, 10*time.Second, 720)
	if rd := slow.Subscriber().CurrentLocalDescription(); rd == nil || strings.Contains(rd.SDP, "transport-wide-cc") {
		t.Fatal("the test client negotiated TWCC after all")
	}
	th.limit.Store(700_000)
	start := time.Now()
	waitFor(t, 30*time.Second, "the client without TWCC moved down by receiver-report loss", func() bool {
		u := lastUpdate(slow, id)
		return u.Reason == sfu.ReasonBandwidth && u.Layer != protocol.QualityHigh
	})
	t.Logf("moved down %v after the throttle, from receiver reports: %+v", time.Since(start), lastUpdate(slow, id))
}

// TestCongestionDelayAloneHoldsLowest: a downlink narrower than the lowest
// layer, but with a deep queue (5 s) so that nothing is lost yet, lowers
// the estimate below that layer on delay alone; the track keeps its lowest
// layer instead of being paused (a growing delay is often just a busy
// receiver), while the allocator has had more rounds than a pause needs.
func TestCongestionDelayAloneHoldsLowest(t *testing.T) {
	timingTest(t, groupCongestion) // see TestCongestionSwitchesDown
	srv := startServer(t, withBWE)
	sh := &shaper{buffer: 5 * time.Second}
	api, err := client.LoopbackAPIWith([]interceptor.Factory{sh})
	if err != nil {
		t.Fatal(err)
	}
	slow := join(t, srv, "bwe-delay", "slow", func(o *client.Options) { o.API = api })
	v := watchVideo(slow)
	pub := join(t, srv, "bwe-delay", "camera")
	f := publishSimulcast(t, pub, 1, 2, 6)
	id := f.published.ID
	v.waitHeight(t, 10*time.Second, 720)
	if err := slow.Call(ctxT(t, 5*time.Second), protocol.MethodSetSubscription,
		protocol.SetSubscriptionParams{TrackID: id, MaxHeight: intp(180)}, nil); err != nil {
		t.Fatal(err)
	}
	v.waitHeight(t, 10*time.Second, 180) // the low layer alone: ~270 kbit/s

	before := srv.Engine().BWECounters().DelayDecreases
	sh.set(150_000)
	waitFor(t, 20*time.Second, "the estimate to fall on a growing delay", func() bool {
		return srv.Engine().BWECounters().DelayDecreases > before
	})
	// More allocation rounds than a pause takes (4 × 500 ms), with the
	// estimate below the layer throughout: the queue only grows.
	deadline := time.Now().Add(4 * time.Second)
	_, n0 := v.snapshot()
	for time.Now().Before(deadline) {
		if u := lastUpdate(slow, id); u.Layer == protocol.QualityPaused {
			t.Fatalf("paused on delay alone: %+v", u)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if _, n := v.snapshot(); n <= n0 {
		t.Fatal("the video stopped")
	}
	if sh.dropped.Load() > 0 {
		t.Fatalf("the queue dropped %d packets: the test meant delay alone", sh.dropped.Load())
	}
}
