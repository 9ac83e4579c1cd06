package relay

import (
	"net"
	"runtime"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// countSink counts packets (the cheapest possible consumer).
type countSink struct{ n atomic.Int64 }

func (c *countSink) WriteRTP(*rtp.Header, []byte, int8) error { c.n.Add(1); return nil }
func (c *countSink) OnSenderReport(int8, uint64, uint32)      {}
func (c *countSink) Close()                                   {}

func cpuNow() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkRelayPacket relays 1,000-byte video packets from an Export to
// an Import over loopback: the origin's encryption, ring and batched send,
// the kernel both ways, the edge's read, authentication, decryption, loss
// tracking, cache and fan-out to one sink. cpu-µs/pkt is the process's
// CPU (both nodes, all goroutines) per relayed packet.
func BenchmarkRelayPacket(b *testing.B) {
	origin, edge := pair(b)
	src := newFakeSource(webrtc.RTPCodecTypeVideo, 1)
	exp, imp := exportImport(b, origin, edge, src, 1, "TR_b")
	sink := &countSink{}
	imp.AddSink(sink)
	payload := make([]byte, 1000)
	hdr := &rtp.Header{Version: 2, PayloadType: 96, SSRC: 1}
	src.now.Store(time.Now().UnixNano())
	// Warm up: the layer's ring and cache are allocated once.
	for i := 0; i < 100; i++ {
		hdr.SequenceNumber++
		_ = exp.WriteRTP(hdr, payload, 0)
	}
	for sink.n.Load() < 100 {
		runtime.Gosched()
	}
	base := sink.n.Load()
	const window = 256 // in flight at most: the socket buffers never overflow
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := cpuNow()
	for i := 0; i < b.N; i++ {
		hdr.SequenceNumber++
		hdr.Timestamp += 30
		for int64(i)-(sink.n.Load()-base) > window {
			time.Sleep(20 * time.Microsecond) // wait without burning CPU
		}
		_ = exp.WriteRTP(hdr, payload, 0)
	}
	deadline := time.Now().Add(10 * time.Second)
	for sink.n.Load()-base < int64(b.N) && time.Now().Before(deadline) {
		time.Sleep(20 * time.Microsecond)
	}
	b.StopTimer()
	cpu := cpuNow() - cpu0
	b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-µs/pkt")
	b.ReportMetric(float64(int64(b.N)-(sink.n.Load()-base)), "lost")
}

// BenchmarkExportWriteRTP is the origin's share: a source's read goroutine
// handing a packet to the export (encrypt into the ring, queue to the
// batched socket), sent to a socket nobody reads.
func BenchmarkExportWriteRTP(b *testing.B) {
	origin, err := Listen("127.0.0.1:0", "node-a", testSecret)
	if err != nil {
		b.Fatal(err)
	}
	defer origin.Close()
	sinkConn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		b.Fatal(err)
	}
	defer sinkConn.Close()
	if err := origin.AddPeer("node-b", sinkConn.LocalAddr().String()); err != nil {
		b.Fatal(err)
	}
	src := newFakeSource(webrtc.RTPCodecTypeVideo, 1)
	exp, err := origin.Export("node-b", src, 1)
	if err != nil {
		b.Fatal(err)
	}
	payload := make([]byte, 1000)
	hdr := &rtp.Header{Version: 2, PayloadType: 96, SSRC: 1}
	_ = exp.WriteRTP(hdr, payload, 0)
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := cpuNow()
	for i := 0; i < b.N; i++ {
		hdr.SequenceNumber++
		_ = exp.WriteRTP(hdr, payload, 0)
		if i%64 == 63 {
			runtime.Gosched() // let the flusher keep up, as between packets
		}
	}
	b.StopTimer()
	b.ReportMetric(float64((cpuNow()-cpu0).Microseconds())/float64(b.N), "cpu-µs/pkt")
}
