package sfu

import (
	"encoding/binary"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"
	"go.uber.org/goleak"
)

// TestBatchConn: datagrams written from several goroutines all arrive, in
// each writer's order; Close sends what is queued, stops the flusher, and
// later writes fail.
func TestBatchConn(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	sendSock := listenLoopback(t)
	recv := listenLoopback(t)
	defer recv.Close()
	_ = recv.SetReadBuffer(8 << 20)
	b := newBatchConn(sendSock, true, nil)
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
	sendSock, recv := listenLoopback(b), listenLoopback(b)
	defer recv.Close()
	go discardUDP(recv, nil)
	c := newBatchConn(sendSock, true, nil)
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

// TestBatchedEngineOnAllInterfaces: with media on every interface (pion's
// multi-socket mux, the default), the batched sockets carry a whole
// connection: ICE, DTLS and SCTP, then data both ways.
func TestBatchedEngineOnAllInterfaces(t *testing.T) {
	e, err := NewEngine(EngineConfig{TCPPort: -1, LoopbackCandidates: true, BatchSends: true,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	batchedBefore := counters.datagramsSent.Load()
	server, err := e.NewPeerConnection(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer server.Close()
	se := webrtc.SettingEngine{}
	se.SetIncludeLoopbackCandidate(true)
	se.SetIPFilter(func(ip net.IP) bool { return ip.IsLoopback() })
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	peer, err := webrtc.NewAPI(webrtc.WithSettingEngine(se)).NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()

	echoed := make(chan string, 1)
	server.OnDataChannel(func(dc *webrtc.DataChannel) {
		dc.OnMessage(func(m webrtc.DataChannelMessage) { _ = dc.SendText("echo " + string(m.Data)) })
	})
	dc, err := peer.CreateDataChannel("data", nil)
	if err != nil {
		t.Fatal(err)
	}
	dc.OnOpen(func() { _ = dc.SendText("hello") })
	dc.OnMessage(func(m webrtc.DataChannelMessage) { echoed <- string(m.Data) })

	negotiateGathered(t, peer, server)
	select {
	case got := <-echoed:
		if got != "echo hello" {
			t.Fatalf("got %q", got)
		}
		if n := counters.datagramsSent.Load() - batchedBefore; n < 5 {
			t.Fatalf("only %d datagrams went through the batched sockets", n)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("no echo over the batched sockets (server %s, peer %s)", server.ConnectionState(), peer.ConnectionState())
	}
}
