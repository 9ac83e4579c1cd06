package client

import (
	"math/rand/v2"
	"sync"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/interceptor/pkg/twcc"
	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"
	twccext "github.com/starling-rtc/starling/internal/twcc"
)

// The client's transport-wide congestion control feedback (what a browser
// sends a server that estimates its downlink): every 100 ms, which packets
// arrived and when, built by pion's own twcc.Recorder, so the feedback on
// the wire is pion's.
//
// It replaces pion's twcc.SenderInterceptor, whose per-packet path is dear
// for a load generator that plays hundreds of viewers on the machine it
// measures: for each packet received it makes an attributes map, unmarshals
// the RTP header into a new struct, and hands the packet to its loop
// goroutine over an unbuffered channel, a goroutine switch per packet. In a
// 300-viewer webinar that is ~55,000 hand-offs a second, and congestion
// control on the server looked dearer than it is, because the generator's
// share of the two cores grew with it (docs/congestion.md, "300 viewers").
// Here the reader records the arrival itself, under a mutex, with the
// sequence number read straight from the packet's bytes: no allocation, no
// hand-off (BenchmarkTWCCFeedback).

// twccInterval is how often feedback is sent: pion's default, and about
// what browsers send at video rates.
const twccInterval = 100 * time.Millisecond

// twccFactory makes one twccFeedback per peer connection.
type twccFactory struct{ interval time.Duration }

func (f twccFactory) NewInterceptor(string) (interceptor.Interceptor, error) {
	iv := f.interval
	if iv <= 0 {
		iv = twccInterval
	}
	return &twccFeedback{interval: iv, start: time.Now(), done: make(chan struct{})}, nil
}

// twccFeedback records the arrival of every packet that carries a
// transport-wide sequence number and sends the feedback on a ticker.
type twccFeedback struct {
	interceptor.NoOp
	interval time.Duration
	start    time.Time // arrival times are µs since then (monotonic)

	mu      sync.Mutex
	rec     *twcc.Recorder // nil until the RTCP writer is bound
	closed  bool
	done    chan struct{}
	running sync.WaitGroup
}

// BindRTCPWriter starts the feedback loop (once per connection).
func (t *twccFeedback) BindRTCPWriter(w interceptor.RTCPWriter) interceptor.RTCPWriter {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed || t.rec != nil {
		return w
	}
	t.rec = twcc.NewRecorder(rand.Uint32())
	t.running.Add(1)
	go t.loop(w)
	return w
}

// BindRemoteStream records the arrival of the stream's packets when it
// negotiated transport-wide sequence numbers.
func (t *twccFeedback) BindRemoteStream(info *interceptor.StreamInfo, r interceptor.RTPReader) interceptor.RTPReader {
	id := twccext.ExtensionID(info)
	if id == 0 {
		return r
	}
	ssrc := info.SSRC
	return interceptor.RTPReaderFunc(func(b []byte, a interceptor.Attributes) (int, interceptor.Attributes, error) {
		n, attr, err := r.Read(b, a)
		if err != nil {
			return n, attr, err
		}
		if seq, ok := twccext.SequenceNumber(b[:n], id); ok {
			at := time.Since(t.start).Microseconds()
			t.mu.Lock()
			if t.rec != nil {
				t.rec.Record(ssrc, seq, at)
			}
			t.mu.Unlock()
		}
		return n, attr, err
	})
}

// Close stops the feedback loop.
func (t *twccFeedback) Close() error {
	t.mu.Lock()
	if !t.closed {
		t.closed = true
		close(t.done)
	}
	t.mu.Unlock()
	t.running.Wait()
	return nil
}

func (t *twccFeedback) loop(w interceptor.RTCPWriter) {
	defer t.running.Done()
	tick := time.NewTicker(t.interval)
	defer tick.Stop()
	for {
		select {
		case <-t.done:
			return
		case <-tick.C:
		}
		t.mu.Lock()
		pkts := t.rec.BuildFeedbackPacket()
		t.mu.Unlock()
		if len(pkts) > 0 {
			_, _ = w.Write(pkts, nil) // a closed connection ends with Close
		}
	}
}

// ConfigureTWCCFeedback negotiates transport-wide congestion control (the
// header extension and the RTCP feedback type, audio and video, as pion's
// webrtc.ConfigureTWCCSender does) and sends the feedback with the
// client's interceptor above instead of pion's.
func ConfigureTWCCFeedback(m *webrtc.MediaEngine, ir *interceptor.Registry) error {
	for _, kind := range []webrtc.RTPCodecType{webrtc.RTPCodecTypeVideo, webrtc.RTPCodecTypeAudio} {
		m.RegisterFeedback(webrtc.RTCPFeedback{Type: webrtc.TypeRTCPFBTransportCC}, kind)
		if err := m.RegisterHeaderExtension(webrtc.RTPHeaderExtensionCapability{URI: sdp.TransportCCURI}, kind); err != nil {
			return err
		}
	}
	ir.Add(twccFactory{})
	return nil
}

// registerDefaults is pion's RegisterDefaultInterceptors with the client's
// TWCC feedback (ConfigureTWCCFeedback) in place of pion's.
func registerDefaults(m *webrtc.MediaEngine, ir *interceptor.Registry) error {
	if err := webrtc.ConfigureNack(m, ir); err != nil {
		return err
	}
	if err := webrtc.ConfigureRTCPReports(ir); err != nil {
		return err
	}
	if err := webrtc.ConfigureSimulcastExtensionHeaders(m); err != nil {
		return err
	}
	if err := webrtc.ConfigureStatsInterceptor(ir); err != nil {
		return err
	}
	return ConfigureTWCCFeedback(m, ir)
}
