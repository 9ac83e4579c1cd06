package client

import (
	"encoding/binary"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/interceptor/pkg/twcc"
	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"
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
	var id uint8
	for _, e := range info.RTPHeaderExtensions {
		if e.URI == sdp.TransportCCURI && e.ID > 0 && e.ID < 256 {
			id = uint8(e.ID)
			break
		}
	}
	if id == 0 {
		return r
	}
	ssrc := info.SSRC
	return interceptor.RTPReaderFunc(func(b []byte, a interceptor.Attributes) (int, interceptor.Attributes, error) {
		n, attr, err := r.Read(b, a)
		if err != nil {
			return n, attr, err
		}
		if seq, ok := transportSeq(b[:n], id); ok {
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

// transportSeq reads the transport-wide sequence number (extension id) of
// an RTP packet, without allocating: RFC 8285's one-byte and two-byte
// header extensions.
func transportSeq(b []byte, id uint8) (uint16, bool) {
	if len(b) < 12 || b[0]>>6 != 2 || b[0]&0x10 == 0 {
		return 0, false
	}
	off := 12 + 4*int(b[0]&0x0f)
	if len(b) < off+4 {
		return 0, false
	}
	profile := binary.BigEndian.Uint16(b[off:])
	end := off + 4 + 4*int(binary.BigEndian.Uint16(b[off+2:]))
	if len(b) < end {
		return 0, false
	}
	ext := b[off+4 : end]
	switch {
	case profile == 0xBEDE: // one-byte headers
		for i := 0; i < len(ext); {
			if ext[i] == 0 { // padding
				i++
				continue
			}
			eid, l := ext[i]>>4, int(ext[i]&0x0f)+1
			if eid == 15 {
				return 0, false // reserved: stop here
			}
			if i+1+l > len(ext) {
				return 0, false
			}
			if eid == id {
				return seqOf(ext[i+1 : i+1+l])
			}
			i += 1 + l
		}
	case profile&0xfff0 == 0x1000: // two-byte headers
		for i := 0; i < len(ext); {
			if ext[i] == 0 {
				i++
				continue
			}
			if i+2 > len(ext) {
				return 0, false
			}
			eid, l := ext[i], int(ext[i+1])
			if i+2+l > len(ext) {
				return 0, false
			}
			if eid == id {
				return seqOf(ext[i+2 : i+2+l])
			}
			i += 2 + l
		}
	}
	return 0, false
}

func seqOf(v []byte) (uint16, bool) {
	if len(v) < 2 {
		return 0, false
	}
	return binary.BigEndian.Uint16(v), true
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
