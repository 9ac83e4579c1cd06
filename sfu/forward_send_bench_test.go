package sfu

import (
	"fmt"
	"net"
	"runtime"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/rtp"
	"github.com/pion/sdp/v3"
	"github.com/pion/srtp/v3"
	"github.com/pion/webrtc/v4"
)

// interceptorTrackWriter lets a down track write into an interceptor
// writer, as pion's track writer does.
type interceptorTrackWriter struct{ w interceptor.RTPWriter }

func (t interceptorTrackWriter) WriteRTP(h *rtp.Header, p []byte) (int, error) {
	return t.w.Write(h, p, nil)
}
func (t interceptorTrackWriter) Write(b []byte) (int, error) { return len(b), nil }

// listenLoopback opens a UDP socket on a free loopback port.
func listenLoopback(tb testing.TB) *net.UDPConn {
	tb.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		tb.Fatal(err)
	}
	return c
}

// discardUDP reads c until it is closed, counting datagrams in n (if not nil).
func discardUDP(c *net.UDPConn, n *atomic.Int64) {
	buf := make([]byte, 2048)
	for {
		if _, err := c.Read(buf); err != nil {
			return
		}
		if n != nil {
			n.Add(1)
		}
	}
}

// waitSent waits until the batched socket has handed everything queued to
// the kernel.
func (b *batchConn) waitSent() {
	for {
		b.mu.Lock()
		n := len(b.pending)
		b.mu.Unlock()
		if n == 0 {
			return
		}
		runtime.Gosched()
	}
}

// BenchmarkForwardEncryptSend is the whole hot path of a forwarded packet,
// down to the wire: the receiver's fan-out (NACK cache, munging, VP8
// rewrite, history, queueing), then on each down track's writer the direct
// SRTP path (marshal, AES-128-GCM seal) into one batched socket, which sends
// with sendmmsg and segmentation offload to one loopback socket per
// subscriber, each read by a goroutine of its own. Wall time on every core
// the machine has, the receiving side of loopback included; ns/fwd-pkt is
// the cost per packet per subscriber. Nothing may be dropped. With cc=on
// each subscriber connection has its congestion-control interceptor
// (bweio.go) above the direct sender, as the server runs by default: each
// packet is numbered, recorded, and stamped after sendmmsg (feedback is
// BenchmarkBWEPerPacketTapped's).
func BenchmarkForwardEncryptSend(b *testing.B) {
	for _, n := range []int{1, 10, 50, 200, 300} {
		for _, cc := range []bool{false, true} {
			b.Run(fmt.Sprintf("subscribers=%d/cc=%s", n, onOff(cc)), func(b *testing.B) {
				benchForwardEncryptSend(b, n, cc)
			})
		}
	}
}

func onOff(v bool) string {
	if v {
		return "on"
	}
	return "off"
}

func benchForwardEncryptSend(b *testing.B, n int, cc bool) {
	send := listenLoopback(b)
	c := newBatchConn(send, true, nil)
	defer c.Close()
	var received atomic.Int64
	keys := &directKeys{key: make([]byte, 16), salt: make([]byte, 12), profile: srtp.ProtectionProfileAeadAes128Gcm}
	r := newBenchReceiver(vp8Codec)
	dts := make([]*DownTrack, n)
	for i := range dts {
		sink := listenLoopback(b)
		defer sink.Close()
		_ = sink.SetReadBuffer(socketBuffer)
		go discardUDP(sink, &received)
		s := &directSender{}
		s.route.Store(&directRoute{conn: c, to: sink.LocalAddr().(*net.UDPAddr).AddrPort(), keys: keys})
		d := NewDownTrack(r, fmt.Sprintf("PA_%d", i))
		d.SetTarget(0)
		var iw interceptor.RTPWriter = s.BindLocalStream(nil, nil)
		if cc {
			ext := []interceptor.RTPHeaderExtension{{URI: sdp.TransportCCURI, ID: 5}}
			iw = newBWEInterceptor(3_000_000).BindLocalStream(&interceptor.StreamInfo{SSRC: uint32(1000 + i),
				MimeType: "video/VP8", RTPHeaderExtensions: ext}, iw)
		}
		w := interceptorTrackWriter{iw}
		if _, err := d.Bind(fakeContext{codecs: []webrtc.RTPCodecParameters{vp8Codec}, ssrc: webrtc.SSRC(1000 + i), w: w}); err != nil {
			b.Fatal(err)
		}
		r.AddSink(d)
		dts[i] = d
	}
	cpu0 := processCPU(b)
	forwardFrames(b, r, 16, func(i int) {
		// Bursts stay within the socket's queue, and at most 48
		// packets per receiver are unread: within its buffer.
		flushAll(dts)
		c.waitSent()
		for received.Load() < int64((i+2-48)*n) {
			time.Sleep(20 * time.Microsecond) // lets the poller wake the readers
		}
	})
	flushAll(dts)
	c.waitSent()
	want := int64((b.N + 1) * n)
	deadline := time.Now().Add(10 * time.Second)
	for received.Load() < want && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	b.StopTimer()
	cpu := processCPU(b) - cpu0
	if got := received.Load(); got < want {
		b.Fatalf("subscribers' sockets received %d datagrams, want %d", got, want)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/fwd-pkt")
	// CPU time of the whole process (both sides of loopback), which a busy
	// machine inflates much less than wall time: the figure to compare
	// cc=on with cc=off.
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N*n), "cpu-ns/fwd-pkt")
}

// processCPU is the process's user + system CPU time so far.
func processCPU(tb testing.TB) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
