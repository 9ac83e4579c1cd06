package sfu

import (
	"fmt"
	"net"
	"testing"
	"time"
)

// BenchmarkBWEPerPacketSocket is congestion control's whole per-packet cost
// on the server, the feedback's socket read included (issue 18's goal:
// ≤ 0.5 µs and no allocation per forwarded packet). Per packet: numbering,
// send record and send-time stamp (one clock read per packet: the server
// reads it once per sent batch, so this is the dearer case). Per feedback
// packet (one every pkts-per-feedback packets): the recvfrom(2) of the
// SRTCP datagram off a real loopback socket, the tap's lookup by address,
// SRTCP decryption, decoding and applying to the estimator, as
// batchConn.ReadFromAddrPort does.
//
// Left out: the client's send (done with the timer stopped, a few hundred
// datagrams at a time, so that each read finds one waiting) and, when the
// server is idle, the reader goroutine's wake-up by the poller and the
// empty read before it sleeps again. The load runs measured one feedback
// packet per ~24 forwarded at 1.5 Mbit/s with pion clients (100 ms
// interval); a browser sending feedback every 50 ms is about one per 8.
func BenchmarkBWEPerPacketSocket(b *testing.B) {
	for _, per := range []int{8, 24} {
		b.Run(fmt.Sprintf("pkts-per-feedback=%d", per), func(b *testing.B) { benchBWESocket(b, per) })
	}
}

func benchBWESocket(b *testing.B, perFeedback int) {
	server := newBatchConn(listenLoopback(b), false, nil)
	defer server.Close()
	client := listenLoopback(b)
	defer client.Close()
	to := server.LocalAddr().(*net.UDPAddr)
	from := client.LocalAddr().(*net.UDPAddr).AddrPort()

	keys := tapKeys()
	raw := feedbacks(b, 8192, perFeedback)
	enc := clientSRTCP(b, keys)
	pkts := make([][]byte, len(raw))
	for i, p := range raw {
		var err error
		if pkts[i], err = enc.EncryptRTCP(nil, p, nil); err != nil {
			b.Fatal(err)
		}
	}
	bi := newBWEInterceptor(3_000_000)
	tap := &rtcpTap{est: bi.est}
	server.tapFrom(from, tap, keys)
	w, h, payload := benchVideoWriter(bi)
	buf := make([]byte, 1500)
	_ = server.SetReadDeadline(time.Now().Add(time.Hour)) // a lost datagram fails the read, not the run

	const chunk = 256 // feedback datagrams queued at a time (the socket buffer holds them)
	next, queued := 0, 0
	var clientCPU time.Duration // the client's sends: not the server's cost
	refill := func() {
		b.StopTimer()
		c0 := processCPU(b)
		defer func() { clientCPU += processCPU(b) - c0 }()
		if next+chunk > len(pkts) {
			tap.setKeys(nil) // a new context: the replay window starts again
			tap.setKeys(keys)
			next = 0
		}
		for k := range chunk {
			if _, err := client.WriteToUDP(pkts[next+k], to); err != nil {
				b.Fatal(err)
			}
		}
		queued = chunk
		b.StartTimer()
	}
	tapped := ReadCounters().BWEFeedbackTapped
	reads := 0
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := processCPU(b)
	for i := 0; i < b.N; i++ {
		h.Extensions = h.Extensions[:0] // as the down track's writer reuses its header
		h.SequenceNumber = uint16(i)
		if _, err := w.Write(h, payload, nil); err != nil {
			b.Fatal(err)
		}
		if i%perFeedback != perFeedback-1 {
			continue
		}
		if queued == 0 {
			refill() // before the first feedback read, and after every chunk
		}
		n, addr, err := server.UDPConn.ReadFromUDPAddrPort(buf)
		if err != nil {
			b.Fatal(err)
		}
		if !server.tapped(buf[:n], addr) {
			b.Fatalf("feedback %d not consumed", next)
		}
		next++
		queued--
		reads++
	}
	b.StopTimer()
	reportCPU(b, processCPU(b)-cpu0-clientCPU)
	if got := ReadCounters().BWEFeedbackTapped - tapped; got != uint64(reads) {
		b.Fatalf("%d feedback packets tapped, %d read", got, reads)
	}
}

// reportCPU adds the benchmark's CPU time per op (the whole process's user
// and system time): on a shared machine ns/op is wall time, and counts the
// time other processes had the core.
func reportCPU(b *testing.B, cpu time.Duration) {
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N), "cpu-ns/op")
}

// BenchmarkFeedbackWake is what one feedback datagram costs the server
// when it arrives at an idle process, as most do between a webinar's
// frames: the socket's reader is woken from the poller, reads it, the tap
// decrypts and applies it, and the reader goes back to sleep. The client
// sends one datagram every 300 µs (a sleep, so the reader is parked each
// time). Mode unread sends the same datagrams to a socket nobody reads:
// tapped − unread (cpu-ns/op, the whole process) is the server's cost per
// feedback datagram, wake-up included, which BenchmarkBWEPerPacketSocket
// leaves out (docs/congestion.md, "300 viewers").
func BenchmarkFeedbackWake(b *testing.B) {
	for _, mode := range []string{"unread", "tapped"} {
		b.Run(mode, func(b *testing.B) {
			server := newBatchConn(listenLoopback(b), false, nil)
			defer server.Close()
			client := listenLoopback(b)
			defer client.Close()
			to := server.LocalAddr().(*net.UDPAddr)
			from := client.LocalAddr().(*net.UDPAddr).AddrPort()
			keys := tapKeys()
			raw := feedbacks(b, 8192, 18)
			enc := clientSRTCP(b, keys)
			pkts := make([][]byte, len(raw))
			for i, p := range raw {
				var err error
				if pkts[i], err = enc.EncryptRTCP(nil, p, nil); err != nil {
					b.Fatal(err)
				}
			}
			tap := &rtcpTap{est: newBWE(3_000_000)}
			server.tapFrom(from, tap, keys)
			before := ReadCounters().BWEFeedbackTapped
			if mode == "tapped" {
				go func() { // the server's socket reader (pion's UDP mux)
					buf := make([]byte, 1500)
					for {
						if _, _, err := server.ReadFromAddrPort(buf); err != nil {
							return
						}
					}
				}()
			}
			b.ResetTimer()
			cpu0 := processCPU(b)
			for i := 0; i < b.N; i++ {
				if i%len(pkts) == 0 && i > 0 {
					tap.setKeys(nil) // a new context: the replay window starts again
					tap.setKeys(keys)
				}
				if _, err := client.WriteToUDP(pkts[i%len(pkts)], to); err != nil {
					b.Fatal(err)
				}
				time.Sleep(300 * time.Microsecond)
			}
			reportCPU(b, processCPU(b)-cpu0)
			b.StopTimer()
			if mode == "tapped" {
				for deadline := time.Now().Add(5 * time.Second); ReadCounters().BWEFeedbackTapped-before < uint64(b.N) && time.Now().Before(deadline); {
					time.Sleep(time.Millisecond)
				}
				if got := ReadCounters().BWEFeedbackTapped - before; got < uint64(b.N) {
					b.Fatalf("%d of %d feedback datagrams tapped", got, b.N)
				}
			}
		})
	}
}
