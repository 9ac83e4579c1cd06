package sfu

import (
	"io"
	"log/slog"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
	"go.uber.org/goleak"

	"github.com/starling-rtc/starling/internal/testutil"
)

// TestMungerPadBeforeStart: padding before any media takes the stream's
// first sequence numbers and timestamp; the first media packet follows the
// padding, its timestamp advanced by the time that passed; no padding slot
// maps to an input; and a Forward taken back leaves the padding state.
func TestMungerPadBeforeStart(t *testing.T) {
	m := NewMunger(90000, 65534, 1000)
	p1, ts1, ok1 := m.Pad(0)
	p2, ts2, ok2 := m.Pad(10_000_000)
	if !ok1 || !ok2 || p1 != 65534 || p2 != 65535 || ts1 != 1000 || ts2 != 1000 {
		t.Fatalf("padding before start: %d/%d %v, %d/%d %v; want 65534 and 65535 at ts 1000", p1, ts1, ok1, p2, ts2, ok2)
	}
	for _, p := range []uint16{p1, p2} {
		if in, ok := m.Translate(p); ok {
			t.Fatalf("padding slot %d translates to input %d", p, in)
		}
	}
	if _, _, ok := m.Lookup(500, 7000); ok {
		t.Fatal("an input maps before any was forwarded")
	}
	// A Forward the caller takes back (Drop of the same packet): still padding only.
	if o, _, ok := m.Forward(499, 4000, 500_000_000); !ok || o != 0 {
		t.Fatalf("first forward: %d %v, want 0 (after the padding, wrapped)", o, ok)
	}
	m.Drop(499)
	if p3, _, ok := m.Pad(1_000_000_000); !ok || p3 != 0 {
		t.Fatalf("padding after a forward taken back: %d %v, want 0", p3, ok)
	}
	// Media 1 s after the last padding.
	o, ots, ok := m.Forward(500, 7000, 2_000_000_000)
	if !ok || o != 1 || ots != 1000+90000 {
		t.Fatalf("first media after padding: seq %d ts %d %v; want 1 and %d", o, ots, ok, 1000+90000)
	}
	o2, ots2, _ := m.Forward(501, 10000, 2_043_000_000)
	if o2 != 2 || ots2 != ots+3000 {
		t.Fatalf("second media: seq %d ts %d; want 2 and %d", o2, ots2, ots+3000)
	}
	if in, ok := m.Translate(o); !ok || in != 500 {
		t.Fatalf("Translate(%d) = %d, %v; want 500", o, in, ok)
	}
	if p, _, ok := m.Pad(0); !ok || p != 3 {
		t.Fatalf("padding after media: %d %v, want 3", p, ok)
	}
}

// padCounter counts the padding-only RTP packets a client receives, before
// anything else reads them.
type padCounter struct {
	interceptor.NoOp
	n atomic.Int64
}

func (c *padCounter) NewInterceptor(string) (interceptor.Interceptor, error) { return c, nil }

func (c *padCounter) BindRemoteStream(_ *interceptor.StreamInfo, r interceptor.RTPReader) interceptor.RTPReader {
	return interceptor.RTPReaderFunc(func(b []byte, a interceptor.Attributes) (int, interceptor.Attributes, error) {
		n, attr, err := r.Read(b, a)
		var h rtp.Header
		if err == nil {
			if hl, e := h.Unmarshal(b[:n]); e == nil && h.Padding && n > hl && hl+int(b[n-1]) == n {
				c.n.Add(1)
			}
		}
		return n, attr, err
	})
}

// TestProbeWithoutMedia: a subscriber whose only video track never
// forwarded a packet (paused for bandwidth before its first keyframe) can
// still probe: the padding goes out on the track's negotiated SSRC, the
// client receives every packet the probe planned, its transport-wide
// feedback measures the probe, and the estimate rises from 100 kbit/s.
// Before, Munger.Pad refused a stream with no media, the probe sent
// nothing, and such a subscriber never got video even once its link freed.
func TestProbeWithoutMedia(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	e, err := NewEngine(EngineConfig{BindIP: "127.0.0.1", TCPPort: -1, BatchSends: true, DirectSRTP: true,
		BandwidthEstimation: true, InitialBitrate: 100_000, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	s, err := NewSubscriber(e, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	src := NewReceiver("TR_never", vp8Codec, webrtc.RTPCodecTypeVideo,
		func([]rtcp.Packet) error { return nil }, slog.New(slog.NewTextHandler(io.Discard, nil)))
	d := NewDownTrack(src, "PA_never")
	defer d.Close()
	if err := s.AddDownTrack(d); err != nil {
		t.Fatal(err)
	}
	d.SetLimits(MaxLayers-1, -1) // paused for bandwidth from the start

	pads := &padCounter{}
	m := &webrtc.MediaEngine{}
	if err := m.RegisterDefaultCodecs(); err != nil {
		t.Fatal(err)
	}
	ir := &interceptor.Registry{}
	ir.Add(pads)
	if err := webrtc.RegisterDefaultInterceptors(m, ir); err != nil { // TWCC feedback among them
		t.Fatal(err)
	}
	se := webrtc.SettingEngine{}
	se.SetIncludeLoopbackCandidate(true)
	se.SetIPFilter(func(ip net.IP) bool { return ip.IsLoopback() })
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	client, err := webrtc.NewAPI(webrtc.WithSettingEngine(se), webrtc.WithMediaEngine(m), webrtc.WithInterceptorRegistry(ir)).
		NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	client.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		for {
			if _, _, err := tr.ReadRTP(); err != nil {
				return
			}
		}
	})
	negotiateGathered(t, s.pc, client)
	s.flushCandidates()
	s.twcc.Store(true) // as the subscriber's own answer path notes (SetAnswer): the client enabled TWCC
	if !testutil.Poll(10*time.Second, s.connected.Load) {
		t.Fatalf("not connected: %s", s.State())
	}
	if p, _ := d.Stats(); p != 0 {
		t.Fatalf("%d media packets sent", p)
	}
	const rate = 1_200_000
	planned0 := e.BWECounters().PaddingPlanned
	if !s.Probe(rate, 300*time.Millisecond) {
		t.Fatal("probe refused")
	}
	if !testutil.Poll(10*time.Second, func() bool {
		return s.ProbeRaises() > 0 && pads.n.Load() >= int64(e.BWECounters().PaddingPlanned-planned0)
	}) {
		c := e.BWECounters()
		t.Fatalf("probe without media: %d padding packets planned, %d written, %d received; %d raises, estimate %d bit/s",
			c.PaddingPlanned-planned0, c.PaddingSent, pads.n.Load(), s.ProbeRaises(), s.EstimatedBitrate())
	}
	c := e.BWECounters()
	t.Logf("probe without media: %d padding packets planned, %d written, %d received; estimate %d bit/s",
		c.PaddingPlanned-planned0, c.PaddingSent, pads.n.Load(), s.EstimatedBitrate())
	if est := s.EstimatedBitrate(); est < 500_000 {
		t.Fatalf("estimate %d bit/s after a probe of %d bit/s on loopback", est, rate)
	}
}
