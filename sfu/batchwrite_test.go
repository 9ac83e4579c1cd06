package sfu

import (
	"encoding/binary"
	"net"
	"net/netip"
	"runtime"
	"testing"
	"time"

	"go.uber.org/goleak"
	"golang.org/x/sys/unix"
)

// TestRunEnd: a segmented run is one peer's datagrams of the first one's
// size, and may end with one shorter datagram.
func TestRunEnd(t *testing.T) {
	a := netip.MustParseAddrPort("127.0.0.1:1000")
	b := netip.MustParseAddrPort("127.0.0.1:1001")
	d := func(to netip.AddrPort, n int) outDatagram { return outDatagram{to: to, n: n} }
	cases := []struct {
		name  string
		batch []outDatagram
		ends  []int
	}{
		{"equal sizes, one peer", []outDatagram{d(a, 1200), d(a, 1200), d(a, 1200)}, []int{3}},
		{"shorter last", []outDatagram{d(a, 1200), d(a, 1200), d(a, 300), d(a, 1200)}, []int{3, 4}},
		{"longer breaks", []outDatagram{d(a, 300), d(a, 1200), d(a, 1200)}, []int{1, 3}},
		{"peers split", []outDatagram{d(a, 1200), d(a, 1200), d(b, 1200), d(b, 1200)}, []int{2, 4}},
		{"single", []outDatagram{d(a, 100)}, []int{1}},
	}
	for _, c := range cases {
		var ends []int
		for i := 0; i < len(c.batch); {
			i = runEnd(c.batch, i)
			ends = append(ends, i)
		}
		if len(ends) != len(c.ends) {
			t.Errorf("%s: runs end at %v, want %v", c.name, ends, c.ends)
			continue
		}
		for k := range ends {
			if ends[k] != c.ends[k] {
				t.Errorf("%s: runs end at %v, want %v", c.name, ends, c.ends)
				break
			}
		}
	}
	long := make([]outDatagram, 100)
	for i := range long {
		long[i] = d(a, 1000)
	}
	if e := runEnd(long, 0); e != maxSegments {
		t.Errorf("a run of 100 equal datagrams ends at %d, want the kernel's limit %d", e, maxSegments)
	}
	for i := range long {
		long[i] = d(a, 1400)
	}
	if e := runEnd(long, 0); e*1400 > maxGSOBytes {
		t.Errorf("a run of %d × 1400 bytes exceeds one UDP payload", e)
	}
}

// gsoPeers sends, through a batchConn, frames of equal-size packets plus a
// shorter last one to several receiving sockets, interleaved the way
// parallel down tracks interleave, and checks every datagram arrives whole
// and in order at its peer. It returns how many left segmented.
func gsoPeers(t *testing.T, b *batchConn) uint64 {
	t.Helper()
	const peers, frames, perFrame = 4, 50, 5
	var recvs []*net.UDPConn
	got := make(chan [3]int, peers*frames*perFrame)
	for p := range peers {
		r := listenLoopback(t)
		defer r.Close()
		_ = r.SetReadBuffer(4 << 20)
		recvs = append(recvs, r)
		go func() {
			buf := make([]byte, 70000)
			for {
				n, err := r.Read(buf)
				if err != nil {
					return
				}
				seq := int(binary.BigEndian.Uint32(buf))
				ok := n == sizeOf(seq%perFrame) && int(buf[n-1]) == seq%251
				if !ok {
					seq = -1
				}
				got <- [3]int{p, seq, n}
			}
		}()
	}
	before := counters.segmentedDatagrams.Load()
	pkt := make([]byte, 1500)
	for f := range frames {
		for k := range perFrame {
			for p := range peers {
				seq := f*perFrame + k
				n := sizeOf(k)
				binary.BigEndian.PutUint32(pkt, uint32(seq))
				pkt[n-1] = byte(seq % 251)
				if _, err := b.WriteToAddrPort(pkt[:n], recvs[p].LocalAddr().(*net.UDPAddr).AddrPort()); err != nil {
					t.Fatal(err)
				}
			}
		}
		if f%10 == 9 {
			time.Sleep(2 * time.Millisecond)
		}
	}
	next := make([]int, peers)
	deadline := time.After(5 * time.Second)
	for range peers * frames * perFrame {
		select {
		case d := <-got:
			if d[1] < 0 {
				t.Fatalf("peer %d: a datagram of %d bytes arrived damaged or merged", d[0], d[2])
			}
			if d[1] != next[d[0]] {
				t.Fatalf("peer %d: datagram %d arrived, expected %d", d[0], d[1], next[d[0]])
			}
			next[d[0]]++
		case <-deadline:
			t.Fatalf("datagrams missing: got %v of %d each (dropped by the batcher: %d)", next, frames*perFrame, b.Dropped())
		}
	}
	return counters.segmentedDatagrams.Load() - before
}

// sizeOf: the packetizer's shape, equal packets and a shorter last one.
func sizeOf(k int) int {
	if k == 4 {
		return 417
	}
	return 1188
}

// gsoSocket opens a loopback UDP socket, skipping where the kernel has no
// UDP GSO.
func gsoSocket(t *testing.T) *net.UDPConn {
	t.Helper()
	if runtime.GOOS != "linux" {
		t.Skip("UDP GSO is Linux only")
	}
	s := listenLoopback(t)
	if !gsoSupported(s) {
		s.Close()
		t.Skip("this kernel has no UDP_SEGMENT")
	}
	return s
}

// TestBatchConnSegmentation: with GSO, each peer's runs leave as segmented
// messages and arrive as the original datagrams, whole and in order.
func TestBatchConnSegmentation(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	s := gsoSocket(t)
	b := newBatchConn(s, true, nil)
	defer b.Close()
	if n := gsoPeers(t, b); n == 0 {
		t.Fatal("no datagram left in a segmented message")
	}
}

// TestBatchConnSegmentationRefused: a socket whose route refuses
// segmentation (here: UDP checksums off, which GSO needs) still delivers
// every datagram; segmentation turns itself off.
func TestBatchConnSegmentationRefused(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	s := gsoSocket(t)
	rc, _ := s.SyscallConn()
	var err error
	_ = rc.Control(func(fd uintptr) {
		err = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_NO_CHECK, 1)
	})
	if err != nil {
		t.Fatal(err)
	}
	b := newBatchConn(s, true, nil)
	defer b.Close()
	if n := gsoPeers(t, b); n != 0 {
		t.Fatalf("%d datagrams reported sent segmented on a socket that refuses it", n)
	}
	if b.Dropped() != 0 {
		t.Fatalf("%d datagrams dropped", b.Dropped())
	}
}

// TestPeerKey: distinct IPv4 peers never share a key; the sort key keeps
// room for the batch position.
func TestPeerKey(t *testing.T) {
	seen := map[uint64]netip.AddrPort{}
	for _, s := range []string{"127.0.0.1:5000", "127.0.0.1:5001", "127.0.0.2:5000", "10.0.0.1:5000", "255.255.255.255:65535", "[::ffff:127.0.0.1]:5002"} {
		a := netip.MustParseAddrPort(s)
		k := peerKey(a)
		if k >= 1<<48 {
			t.Fatalf("%s: key %x over 48 bits", s, k)
		}
		if o, ok := seen[k]; ok {
			t.Fatalf("%s and %s share key %x", s, o, k)
		}
		seen[k] = a
	}
	if peerKey(netip.MustParseAddrPort("[2001:db8::1]:5000")) == peerKey(netip.MustParseAddrPort("[2001:db8::2]:5000")) {
		t.Fatal("two IPv6 peers share a key")
	}
}
