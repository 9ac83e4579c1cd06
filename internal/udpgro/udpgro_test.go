package udpgro

import (
	"encoding/binary"
	"net"
	"runtime"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/net/ipv4"
	"golang.org/x/sys/unix"
)

// TestCoalescedReads: a sender's segmented message (UDP GSO, as the
// server's batched sockets send a video frame) reaches a GRO socket whole
// and Conn returns its datagrams one by one, each intact, shorter last one
// included; a plain datagram in between reads as itself.
func TestCoalescedReads(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("UDP GRO is Linux only")
	}
	lc, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	c := Wrap(lc)
	defer c.Close()
	if !c.GRO() {
		t.Skip("this kernel has no UDP_GRO")
	}
	s, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	to := c.LocalAddr().(*net.UDPAddr)

	const seg, count, last = 1000, 6, 321
	payload := make([]byte, seg*(count-1)+last)
	for i := range count {
		binary.BigEndian.PutUint32(payload[i*seg:], uint32(i))
	}
	oob := make([]byte, unix.CmsgSpace(2))
	h := (*unix.Cmsghdr)(unsafe.Pointer(&oob[0]))
	h.Level, h.Type = unix.IPPROTO_UDP, unix.UDP_SEGMENT
	h.SetLen(unix.CmsgLen(2))
	binary.NativeEndian.PutUint16(oob[unix.CmsgLen(0):], seg)
	pc := ipv4.NewPacketConn(s)
	msgs := []ipv4.Message{
		{Buffers: [][]byte{payload}, OOB: oob, Addr: to},
		{Buffers: [][]byte{[]byte("plain")}, Addr: to},
	}
	if n, err := pc.WriteBatch(msgs, 0); err != nil || n != 2 {
		t.Skipf("segmented send refused here (%d sent): %v", n, err)
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 2000)
	for i := range count {
		n, from, err := c.ReadFromAddrPort(buf)
		if err != nil {
			t.Fatalf("datagram %d: %v", i, err)
		}
		want := seg
		if i == count-1 {
			want = last
		}
		if n != want || binary.BigEndian.Uint32(buf) != uint32(i) {
			t.Fatalf("datagram %d: %d bytes starting %d, want %d bytes starting %d", i, n, binary.BigEndian.Uint32(buf), want, i)
		}
		if from != s.LocalAddr().(*net.UDPAddr).AddrPort() {
			t.Fatalf("datagram %d from %v", i, from)
		}
	}
	n, err := c.Read(buf)
	if err != nil || string(buf[:n]) != "plain" {
		t.Fatalf("then %q, %v; want \"plain\"", buf[:n], err)
	}
	if c.merged == 0 {
		t.Fatal("the segmented message was read datagram by datagram: GRO did not keep it whole")
	}
}

func TestSegmentSize(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("Linux control messages")
	}
	if segmentSize(nil) != 0 || segmentSize([]byte{1, 2, 3}) != 0 {
		t.Fatal("no control message should read as 0")
	}
	oob := make([]byte, unix.CmsgSpace(4)*2)
	put := func(off int, level, typ int32, v uint32) {
		h := (*unix.Cmsghdr)(unsafe.Pointer(&oob[off]))
		h.Level, h.Type = level, typ
		h.SetLen(unix.CmsgLen(4))
		binary.NativeEndian.PutUint32(oob[off+unix.CmsgLen(0):], v)
	}
	put(0, unix.IPPROTO_IP, unix.IP_TOS, 0)
	put(unix.CmsgSpace(4), unix.IPPROTO_UDP, unix.UDP_GRO, 1188)
	if got := segmentSize(oob); got != 1188 {
		t.Fatalf("segment size %d, want 1188 (after another control message)", got)
	}
	bad := make([]byte, len(oob))
	copy(bad, oob)
	(*unix.Cmsghdr)(unsafe.Pointer(&bad[0])).Len = 1 << 20
	if segmentSize(bad) != 0 {
		t.Fatal("a control message longer than the buffer must read as 0")
	}
}
