package rawudp

import (
	"bytes"
	"errors"
	"net"
	"net/netip"
	"testing"
	"time"
)

func listen(t *testing.T, network, host string) *net.UDPConn {
	t.Helper()
	c, err := net.ListenUDP(network, &net.UDPAddr{IP: net.ParseIP(host)})
	if err != nil {
		t.Skipf("no %s on %s here: %v", network, host, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// TestRoundTrip: a batch of messages, one of several buffers, reaches a
// plain socket intact and in order, and a reply reads back with its
// sender's address, on IPv4, IPv6 and a dual-stack socket talking IPv4.
func TestRoundTrip(t *testing.T) {
	cases := []struct{ name, net, host, peerNet, peerHost string }{
		{"ipv4", "udp4", "127.0.0.1", "udp4", "127.0.0.1"},
		{"ipv6", "udp6", "::1", "udp6", "::1"},
		{"dual stack to ipv4", "udp", "::", "udp4", "127.0.0.1"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := listen(t, tc.net, tc.host)
			peer := listen(t, tc.peerNet, tc.peerHost)
			r, err := New(c)
			if err != nil {
				t.Fatal(err)
			}
			to := peer.LocalAddr().(*net.UDPAddr).AddrPort()
			msgs := []Message{
				{Buffers: [][]byte{[]byte("one")}, To: to},
				{Buffers: [][]byte{[]byte("tw"), []byte("o")}, To: to},
				{Buffers: [][]byte{[]byte("three")}, To: to},
			}
			n, err := r.WriteBatch(msgs)
			if err != nil || n != len(msgs) {
				t.Fatalf("WriteBatch = %d, %v", n, err)
			}
			buf := make([]byte, 100)
			_ = peer.SetReadDeadline(time.Now().Add(10 * time.Second))
			var from netip.AddrPort
			for _, want := range []string{"one", "two", "three"} {
				k, f, err := peer.ReadFromUDPAddrPort(buf)
				if err != nil {
					t.Fatal(err)
				}
				if string(buf[:k]) != want {
					t.Fatalf("got %q, want %q", buf[:k], want)
				}
				from = f
			}
			if _, err := peer.WriteToUDPAddrPort([]byte("reply"), from); err != nil {
				t.Fatal(err)
			}
			_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
			k, _, src, err := r.ReadMsg(buf, nil)
			if err != nil {
				t.Fatal(err)
			}
			if string(buf[:k]) != "reply" || src.Port() != to.Port() || src.Addr().Unmap() != to.Addr().Unmap() {
				t.Fatalf("read %q from %v, want \"reply\" from %v", buf[:k], src, to)
			}
		})
	}
}

// TestReadErrors: a read deadline and a closed socket end a waiting read
// with the net package's errors, so callers' checks work as before.
func TestReadErrors(t *testing.T) {
	c := listen(t, "udp4", "127.0.0.1")
	r, err := New(c)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 10)
	_ = c.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	_, _, _, err = r.ReadMsg(buf, nil)
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("read past the deadline: %v, want a timeout", err)
	}
	_ = c.SetReadDeadline(time.Time{})
	done := make(chan error, 1)
	go func() {
		_, _, _, err := r.ReadMsg(buf, nil)
		done <- err
	}()
	c.Close()
	select {
	case err := <-done:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("read on a closed socket: %v, want net.ErrClosed", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("read did not end when the socket closed")
	}
	if _, err := r.WriteBatch([]Message{{Buffers: [][]byte{[]byte("x")}, To: c.LocalAddr().(*net.UDPAddr).AddrPort()}}); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("write on a closed socket: %v, want net.ErrClosed", err)
	}
}

// TestWrongFamily: an IPv6 destination from an IPv4 socket is refused,
// not sent somewhere else; the messages before it leave, and the caller
// resends from it as after a partial sendmmsg.
func TestWrongFamily(t *testing.T) {
	c := listen(t, "udp4", "127.0.0.1")
	peer := listen(t, "udp4", "127.0.0.1")
	r, err := New(c)
	if err != nil {
		t.Fatal(err)
	}
	to := peer.LocalAddr().(*net.UDPAddr).AddrPort()
	msgs := []Message{
		{Buffers: [][]byte{[]byte("before")}, To: to},
		{Buffers: [][]byte{[]byte("x")}, To: netip.MustParseAddrPort("[::1]:9")},
		{Buffers: [][]byte{[]byte("after")}, To: to},
	}
	if n, err := r.WriteBatch(msgs); n != 1 || err != nil {
		t.Fatalf("WriteBatch = %d, %v; want the one message before the IPv6 one", n, err)
	}
	if n, err := r.WriteBatch(msgs[1:]); n != 0 || err == nil {
		t.Fatalf("WriteBatch from the IPv6 message = %d, %v; want 0 and an error", n, err)
	}
	if n, err := r.WriteBatch(msgs[2:]); n != 1 || err != nil {
		t.Fatalf("WriteBatch after it = %d, %v", n, err)
	}
	buf := make([]byte, 100)
	_ = peer.SetReadDeadline(time.Now().Add(10 * time.Second))
	for _, want := range []string{"before", "after"} {
		k, _, err := peer.ReadFromUDPAddrPort(buf)
		if err != nil || string(buf[:k]) != want {
			t.Fatalf("read %q, %v; want %q", buf[:k], err, want)
		}
	}
}

// TestNoAllocation: a write and a read allocate nothing (media hot path).
func TestNoAllocation(t *testing.T) {
	c := listen(t, "udp4", "127.0.0.1")
	peer := listen(t, "udp4", "127.0.0.1")
	r, err := New(c)
	if err != nil {
		t.Fatal(err)
	}
	p, err := New(peer)
	if err != nil {
		t.Fatal(err)
	}
	payload := bytes.Repeat([]byte{7}, 1200)
	msgs := []Message{{Buffers: [][]byte{payload}, To: peer.LocalAddr().(*net.UDPAddr).AddrPort()}}
	buf := make([]byte, 1500)
	allocs := testing.AllocsPerRun(200, func() {
		if n, err := r.WriteBatch(msgs); n != 1 || err != nil {
			t.Fatalf("WriteBatch = %d, %v", n, err)
		}
		if n, _, _, err := p.ReadMsg(buf, nil); n != len(payload) || err != nil {
			t.Fatalf("ReadMsg = %d, %v", n, err)
		}
	})
	if allocs != 0 {
		t.Fatalf("%.1f allocations per write and read, want 0", allocs)
	}
}

// BenchmarkWriteRead: one datagram out and back in over loopback.
func BenchmarkWriteRead(b *testing.B) {
	c, _ := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	defer c.Close()
	peer, _ := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	defer peer.Close()
	r, _ := New(c)
	p, _ := New(peer)
	msgs := []Message{{Buffers: [][]byte{make([]byte, 1200)}, To: peer.LocalAddr().(*net.UDPAddr).AddrPort()}}
	buf := make([]byte, 1500)
	b.ReportAllocs()
	for b.Loop() {
		_, _ = r.WriteBatch(msgs)
		_, _, _, _ = p.ReadMsg(buf, nil)
	}
}
