package server_test

import (
	"context"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/pion/interceptor"
	"github.com/starling-rtc/starling/client"
	"github.com/starling-rtc/starling/protocol"
	"github.com/starling-rtc/starling/sfu"
)

// delayLink delays every incoming RTP packet by a fixed time at the
// subscriber's own end, before its congestion-control feedback sees it: to
// the SFU it is a downlink with that much propagation delay, a round trip
// that long for its transport-wide feedback.
type delayLink struct {
	interceptor.NoOp
	delay time.Duration
	done  chan struct{} // closed with the connection
	once  sync.Once
}

func (l *delayLink) NewInterceptor(string) (interceptor.Interceptor, error) {
	l.once.Do(func() { l.done = make(chan struct{}) })
	return l, nil
}

// Close ends the link's goroutines with the connection.
func (l *delayLink) Close() error {
	select {
	case <-l.done:
	default:
		close(l.done)
	}
	return nil
}

// BindRemoteStream reads the stream eagerly and hands each packet on at
// its arrival time plus the delay, in order.
func (l *delayLink) BindRemoteStream(_ *interceptor.StreamInfo, r interceptor.RTPReader) interceptor.RTPReader {
	queued := make(chan shapedPacket, 8192)
	go func() {
		defer close(queued)
		for {
			b := make([]byte, 1500)
			n, attr, err := r.Read(b, nil)
			select {
			case queued <- shapedPacket{b: b[:n], attr: attr, err: err, at: time.Now().Add(l.delay)}:
			case <-l.done:
				return
			}
			if err != nil {
				return
			}
		}
	}()
	return interceptor.RTPReaderFunc(func(b []byte, _ interceptor.Attributes) (int, interceptor.Attributes, error) {
		p, ok := <-queued
		if !ok {
			return 0, nil, io.EOF
		}
		if p.err != nil {
			return 0, nil, p.err
		}
		if d := time.Until(p.at); d > 0 {
			select {
			case <-time.After(d):
			case <-l.done:
				return 0, nil, io.EOF
			}
		}
		return copy(b, p.b), p.attr, nil
	})
}

// TestCongestionLongRTTNotCut: a subscriber 1.5 s away (a satellite hop
// behind a bloated queue) has every packet reported a round trip after it
// is sent. When its video resumes after a pause, the first report is
// 1.5 s away while the last feedback is older still; with the feedback
// timeout a fixed 1 s, the allocation round 1-1.5 s after the resume cut
// the estimate every time (sfu/bwetimeout.go). It now waits 1 s beyond the
// link's measured report delay. The same link going dead is still cut.
func TestCongestionLongRTTNotCut(t *testing.T) {
	timingTest(t, groupCongestion) // see TestCongestionSwitchesDown
	srv := startServer(t, withBWE)
	link := &delayLink{delay: 1500 * time.Millisecond}
	th := &throttle{}
	api, err := client.LoopbackAPIWith([]interceptor.Factory{link, th})
	if err != nil {
		t.Fatal(err)
	}
	slow := join(t, srv, "bwe-rtt", "far", func(o *client.Options) { o.API = api })
	v := watchVideo(slow)
	pub := join(t, srv, "bwe-rtt", "camera")
	f := publishSimulcast(t, pub, 1, 2, 6)
	id := f.published.ID
	v.waitHeight(t, 30*time.Second, 720)
	eng := srv.Engine()
	setPaused := func(p bool) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := slow.Call(ctx, protocol.MethodSetSubscription, protocol.SetSubscriptionParams{TrackID: id, Paused: &p}, nil); err != nil {
			t.Fatal(err)
		}
	}
	// A resume judged: its first keyframe came within the link's delay and
	// a second (the feedback's lateness that the timeout allows, beyond the
	// link's report delay). A later keyframe means the subscriber's reading
	// was stalled, its feedback with it (load 40: one 5.4 s after the
	// resume, with a timeout); a cut then is the timeout doing its job for
	// a silent reader (undone when the late feedback comes), not the cut
	// of a live link this test is about, and the resume is done again.
	// The cut this test was written for came 1-1.5 s after every resume.
	const judged = 2
	inTime := link.delay + time.Second
	paused := func() {
		setPaused(true)
		waitFor(t, 10*time.Second, "the track paused by the subscriber", func() bool {
			u := lastUpdate(slow, id)
			return u.Layer == protocol.QualityPaused && u.Reason == sfu.ReasonSubscriber
		})
		// The stimulus, not a synchronisation: a silence longer than the
		// round trip, so that the last feedback is over 1 s old when the
		// video resumes. It also lets the resume before it play out: a
		// cut comes reportWait (1 s + the report delay) after it at most.
		time.Sleep(2 * time.Second)
	}
	paused()
	clean := 0
	for i := 1; clean < judged; i++ {
		if i > 3*judged {
			t.Fatalf("only %d of %d resumes had their first keyframe within %v: the machine too starved to judge", clean, i-1, inTime)
		}
		cuts := eng.BWECounters().FeedbackTimeouts
		resumed, _ := v.snapshot()
		setPaused(false)
		start := time.Now()
		// A keyframe at the subscriber after the resume: 1.5 s on the way,
		// its report as long back. By then the round that cut (1-1.5 s
		// after the resume, before the report) has run.
		waitFor(t, 30*time.Second, "a keyframe after the resume", func() bool {
			s, _ := v.snapshot()
			return len(s) > len(resumed)
		})
		took := time.Since(start)
		paused() // the next resume's stimulus, and this one's cuts counted
		n := eng.BWECounters().FeedbackTimeouts - cuts
		t.Logf("resume %d: first keyframe %v after it; %d feedback timeouts", i, took, n)
		if took > inTime {
			continue
		}
		clean++
		if n != 0 {
			t.Fatalf("%d feedback timeouts on a live link 1.5 s away, after a resume", n)
		}
	}
	resumed, _ := v.snapshot()
	setPaused(false)
	waitFor(t, 30*time.Second, "a keyframe after the last resume", func() bool {
		s, _ := v.snapshot()
		return len(s) > len(resumed)
	})
	before := eng.BWECounters().FeedbackTimeouts

	// The link dies (an 80 kbit/s throttle, narrower than one video
	// packet): its last feedback comes 1.5 s later, then 1 s of silence
	// cuts, and the track comes down.
	th.set(80_000)
	died := time.Now()
	waitFor(t, 30*time.Second, "a feedback timeout on the dead link", func() bool {
		return eng.BWECounters().FeedbackTimeouts > before
	})
	t.Logf("dead link: first feedback timeout %v after it died", time.Since(died))
	waitFor(t, 30*time.Second, "the track moved down for bandwidth on the dead link", func() bool {
		u := lastUpdate(slow, id)
		return u.Reason == sfu.ReasonBandwidth && u.Layer != protocol.QualityHigh
	})
	t.Logf("dead link: moved down %v after it died: %+v", time.Since(died), lastUpdate(slow, id))
}
