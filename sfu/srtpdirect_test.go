package sfu

import (
	"bytes"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/srtp/v3"
	"github.com/pion/webrtc/v4"
	"go.uber.org/goleak"
)

// TestDirectSRTP sends audio to a pion client through a subscriber
// connection and checks what the client decrypts, packet by packet, along
// with the path the stream took: Starling's own encryption where it is the
// DTLS server on its batched sockets, pion's otherwise.
func TestDirectSRTP(t *testing.T) {
	for _, tc := range []struct {
		name       string
		cfg        EngineConfig
		clientDTLS webrtc.DTLSRole // the client's answering role; 0 = pion's default (active)
		want       string
	}{
		{"one socket", EngineConfig{BindIP: "127.0.0.1", BatchSends: true, DirectSRTP: true}, 0, "direct"},
		{"socket per interface", EngineConfig{LoopbackCandidates: true, BatchSends: true, DirectSRTP: true}, 0, "direct"},
		{"Starling is the DTLS client", EngineConfig{BindIP: "127.0.0.1", BatchSends: true, DirectSRTP: true}, webrtc.DTLSRoleServer, "pion"},
		{"turned off", EngineConfig{BindIP: "127.0.0.1", BatchSends: true}, 0, "pion"},
		{"unbatched sockets", EngineConfig{BindIP: "127.0.0.1", DirectSRTP: true}, 0, "pion"},
		{"congestion control", EngineConfig{BindIP: "127.0.0.1", BatchSends: true, DirectSRTP: true, BandwidthEstimation: true}, 0, "direct"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
			tc.cfg.TCPPort = -1
			tc.cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
			e, err := NewEngine(tc.cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer e.Close()
			got := sendThroughSubscriber(t, e, tc.clientDTLS)
			if got != tc.want {
				t.Fatalf("the stream took %s's path, want %s", got, tc.want)
			}
		})
	}
}

// sendThroughSubscriber forwards 200 Opus packets to a pion client and
// returns the path the stream took.
func sendThroughSubscriber(t *testing.T, e *Engine, clientDTLS webrtc.DTLSRole) string {
	t.Helper()
	s, err := NewSubscriber(e, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	src := NewReceiver("TR_direct", opusCodec, webrtc.RTPCodecTypeAudio,
		func([]rtcp.Packet) error { return nil }, slog.New(slog.NewTextHandler(io.Discard, nil)))
	d := NewDownTrack(src, "PA_direct")
	defer d.Close()
	if err := s.AddDownTrack(d); err != nil {
		t.Fatal(err)
	}

	se := webrtc.SettingEngine{}
	se.SetIncludeLoopbackCandidate(true)
	se.SetIPFilter(func(ip net.IP) bool { return ip.IsLoopback() })
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	if clientDTLS != 0 {
		if err := se.SetAnsweringDTLSRole(clientDTLS); err != nil {
			t.Fatal(err)
		}
	}
	m := &webrtc.MediaEngine{}
	if err := m.RegisterDefaultCodecs(); err != nil {
		t.Fatal(err)
	}
	client, err := webrtc.NewAPI(webrtc.WithSettingEngine(se), webrtc.WithMediaEngine(m)).NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	const n = 200
	received := make(chan *rtp.Packet, n)
	client.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		for {
			p, _, err := tr.ReadRTP()
			if err != nil {
				return
			}
			received <- p
		}
	})
	direct0, pion0 := counters.directStreams.Load(), counters.pionStreams.Load()
	negotiateGathered(t, s.pc, client)
	s.flushCandidates()
	deadline := time.Now().Add(10 * time.Second)
	for !s.connected.Load() {
		if time.Now().After(deadline) {
			t.Fatalf("not connected: %s", s.State())
		}
		time.Sleep(10 * time.Millisecond)
	}

	payload := func(i int) []byte { return bytes.Repeat([]byte{byte(i)}, 40+i%100) }
	hdr := &rtp.Header{Version: 2, SequenceNumber: 1000, Timestamp: 5000, SSRC: 1234}
	// Ten at a time, each ten received before the next are written: the
	// down track's audio queue is bounded and drops beyond its bound, and a
	// fixed pause between writes did not keep a starved writer goroutine
	// within it on a busy machine.
	const batch = 10
	for i := 0; i < n; i++ {
		hdr.SequenceNumber++
		hdr.Timestamp += 960
		if err := d.WriteRTP(hdr, payload(i), 0); err != nil {
			t.Fatal(err)
		}
		if i%batch != batch-1 && i != n-1 {
			continue
		}
		for k := i - i%batch; k <= i; k++ {
			select {
			case p := <-received:
				if !bytes.Equal(p.Payload, payload(k)) {
					t.Fatalf("packet %d: payload of %d bytes differs from the one sent (%d bytes)", k, len(p.Payload), len(payload(k)))
				}
			case <-time.After(10 * time.Second):
				t.Fatalf("the client decrypted %d of %d packets", k, n)
			}
		}
	}
	direct, pion := counters.directStreams.Load()-direct0, counters.pionStreams.Load()-pion0
	if e.direct && direct+pion != 1 {
		t.Errorf("direct sending on: %d streams counted direct and %d pion, want 1 in all", direct, pion)
	}
	if direct > 0 {
		return "direct"
	}
	return "pion"
}

// directBench is a direct stream to a loopback socket that reads and
// discards, with AES-128-GCM keys.
func directBench(tb testing.TB) (*directStream, func()) {
	tb.Helper()
	recv := listenLoopback(tb)
	send := listenLoopback(tb)
	go discardUDP(recv, nil)
	c := newBatchConn(send, true, nil)
	s := &directSender{}
	s.route.Store(&directRoute{conn: c, to: recv.LocalAddr().(*net.UDPAddr).AddrPort(),
		keys: &directKeys{key: make([]byte, 16), salt: make([]byte, 12), profile: srtp.ProtectionProfileAeadAes128Gcm}})
	st := s.BindLocalStream(nil, nil).(*directStream)
	return st, func() { _ = c.Close(); _ = recv.Close() }
}

// TestDirectWriteDoesNotAllocate: marshal, encrypt and queue reuse pooled
// buffers and the stream's scratch header.
func TestDirectWriteDoesNotAllocate(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector makes sync.Pool drop buffers on purpose")
	}
	st, done := directBench(t)
	defer done()
	h := &rtp.Header{Version: 2, PayloadType: 96, SSRC: 5}
	payload := make([]byte, 1100)
	write := func() {
		h.SequenceNumber++
		if _, err := st.Write(h, payload, nil); err != nil {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Microsecond) // the flusher keeps up; the queue does not grow
	}
	for i := 0; i < 100; i++ {
		write() // contexts, pools and the batch's slices warm up
	}
	if n := testing.AllocsPerRun(200, write); n > 0.05 {
		t.Fatalf("%.2f allocations per packet", n)
	}
}

// BenchmarkDirectWrite is the direct path's cost per packet for the
// writer: marshal, AES-GCM seal, queue. The flusher's sendmmsg runs on its
// own goroutine.
func BenchmarkDirectWrite(b *testing.B) {
	st, done := directBench(b)
	defer done()
	h := &rtp.Header{Version: 2, PayloadType: 96, SSRC: 5}
	payload := make([]byte, 1100)
	b.ReportAllocs()
	b.SetBytes(int64(len(payload)))
	for i := 0; b.Loop(); i++ {
		h.SequenceNumber++
		_, _ = st.Write(h, payload, nil)
		if i%256 == 255 {
			time.Sleep(50 * time.Microsecond) // stay under the queue bound
		}
	}
}
