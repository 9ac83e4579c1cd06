package sfu

import (
	"encoding/binary"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// TestBatchConn: datagrams written from several goroutines all arrive, in
// each writer's order; Close sends what is queued, stops the flusher, and
// later writes fail.
func TestBatchConn(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	sendSock, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	recv, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer recv.Close()
	_ = recv.SetReadBuffer(8 << 20)
	b := newBatchConn(sendSock)
	to := recv.LocalAddr().(*net.UDPAddr).AddrPort()

	const writers, each = 4, 500
	got := make(chan [2]uint32, writers*each)
	go func() {
		buf := make([]byte, 2000)
		for {
			n, err := recv.Read(buf)
			if err != nil {
				return
			}
			if n == 1000 {
				got <- [2]uint32{binary.BigEndian.Uint32(buf), binary.BigEndian.Uint32(buf[4:])}
			}
		}
	}()
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p := make([]byte, 1000)
			for i := range each {
				binary.BigEndian.PutUint32(p, uint32(w))
				binary.BigEndian.PutUint32(p[4:], uint32(i))
				if _, err := b.WriteToAddrPort(p, to); err != nil {
					t.Error(err)
					return
				}
				if i%50 == 0 {
					time.Sleep(time.Millisecond) // let the receiver keep up
				}
			}
		}()
	}
	wg.Wait()
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	next := make([]uint32, writers)
	deadline := time.After(5 * time.Second)
	for n := 0; n < writers*each; n++ {
		select {
		case d := <-got:
			if d[1] != next[d[0]] {
				t.Fatalf("writer %d: datagram %d arrived, expected %d (lost or reordered)", d[0], d[1], next[d[0]])
			}
			next[d[0]]++
		case <-deadline:
			t.Fatalf("only %d of %d datagrams arrived (dropped by the batcher: %d)", n, writers*each, b.Dropped())
		}
	}
	if _, err := b.WriteToAddrPort([]byte{1}, to); err == nil {
		t.Fatal("write after Close succeeded")
	}
	if _, err := b.WriteTo([]byte{1}, net.UDPAddrFromAddrPort(netip.MustParseAddrPort("127.0.0.1:9"))); err == nil {
		t.Fatal("WriteTo after Close succeeded")
	}
}

// BenchmarkBatchConnWrite: queueing one 1200-byte datagram (the flusher
// sends on its own goroutine, batched).
func BenchmarkBatchConnWrite(b *testing.B) {
	sendSock, _ := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	recv, _ := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	defer recv.Close()
	go func() {
		buf := make([]byte, 2000)
		for {
			if _, err := recv.Read(buf); err != nil {
				return
			}
		}
	}()
	c := newBatchConn(sendSock)
	defer c.Close()
	to := recv.LocalAddr().(*net.UDPAddr).AddrPort()
	p := make([]byte, 1200)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		_, _ = c.WriteToAddrPort(p, to)
		if i%256 == 255 {
			time.Sleep(50 * time.Microsecond) // stay under the queue bound
		}
	}
}
