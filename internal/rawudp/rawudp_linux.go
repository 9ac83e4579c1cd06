package rawudp

import (
	"encoding/binary"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// MaxMessages is the most messages one WriteBatch sends; MaxBuffers the
// most buffers in all of them.
const (
	MaxMessages = 64
	MaxBuffers  = MaxMessages * 64 // 64 segments each, the kernel's UDP_MAX_SEGMENTS
)

// ioSync orders memory around the socket for the race detector, as the
// syscall package's Read and Write do: what a goroutine wrote before a send
// happens before what a reader does after its read (tests share memory
// with a peer that way). One atomic operation per system call.
var ioSync atomic.Uint64

// Conn reads and writes one UDP socket. Reads are serialised among
// themselves, writes among themselves.
type Conn struct {
	c     *net.UDPConn
	rc    syscall.RawConn
	inet6 bool // the socket is AF_INET6: IPv4 peers are written v4-mapped

	rmu    sync.Mutex
	rmsg   unix.Msghdr
	riov   unix.Iovec
	rname  unix.RawSockaddrInet6 // large enough for either family
	rn     int
	rerrno syscall.Errno
	readFn func(fd uintptr) bool // bound once: no allocation per read

	wmu     sync.Mutex
	w       *sendState // at the first WriteBatch: a socket only read (udpgro) does not carry 70 KB
	wcount  int
	wn      int
	werrno  syscall.Errno
	writeFn func(fd uintptr) bool
}

// sendState is sendmmsg's arguments, reused.
type sendState struct {
	hdrs  [MaxMessages]unix.Mmsghdr
	names [MaxMessages]unix.RawSockaddrInet6
	iovs  [MaxBuffers]unix.Iovec
}

// New wraps c; it fails only for a socket without a descriptor (closed or
// not opened by the net package).
func New(c *net.UDPConn) (*Conn, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return nil, err
	}
	r := &Conn{c: c, rc: rc}
	domain := -1
	_ = rc.Control(func(fd uintptr) {
		if d, err := unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_DOMAIN); err == nil {
			domain = d
		}
	})
	if domain < 0 { // no SO_DOMAIN (very old kernels): the bound address says
		a, _ := c.LocalAddr().(*net.UDPAddr)
		domain = unix.AF_INET6
		if a != nil && a.IP.To4() != nil {
			domain = unix.AF_INET
		}
	}
	r.inet6 = domain == unix.AF_INET6
	r.readFn = r.read
	r.writeFn = r.write
	return r, nil
}

// ReadMsg reads one datagram (or a coalesced run, with UDP_GRO) into p and
// its control messages into oob.
func (r *Conn) ReadMsg(p, oob []byte) (n, oobn int, from netip.AddrPort, err error) {
	r.rmu.Lock()
	defer r.rmu.Unlock()
	r.riov = unix.Iovec{}
	if len(p) > 0 {
		r.riov.Base = &p[0]
		r.riov.SetLen(len(p))
	}
	r.rmsg = unix.Msghdr{Name: (*byte)(unsafe.Pointer(&r.rname)), Namelen: uint32(unsafe.Sizeof(r.rname)), Iov: &r.riov, Iovlen: 1}
	if len(oob) > 0 {
		r.rmsg.Control = &oob[0]
		r.rmsg.SetControllen(len(oob))
	}
	r.rerrno = 0
	err = r.rc.Read(r.readFn)
	ioSync.Load()
	if err != nil {
		r.riov.Base, r.rmsg.Control = nil, nil
		return 0, 0, netip.AddrPort{}, err
	}
	r.riov.Base, r.rmsg.Control = nil, nil
	if r.rerrno != 0 {
		return 0, 0, netip.AddrPort{}, opError("read", "recvmsg", r.rerrno)
	}
	return r.rn, int(r.rmsg.Controllen), sockaddr(&r.rname), nil
}

func (r *Conn) read(fd uintptr) bool {
	for {
		n, _, e := syscall.RawSyscall(unix.SYS_RECVMSG, fd, uintptr(unsafe.Pointer(&r.rmsg)), 0)
		switch e {
		case 0:
			r.rn = int(n)
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return false // wait until readable
		default:
			r.rerrno = e
		}
		return true
	}
}

// sockaddr decodes a sockaddr_in or sockaddr_in6 as the net package does
// (a v4-mapped address stays mapped).
func sockaddr(sa *unix.RawSockaddrInet6) netip.AddrPort {
	switch sa.Family {
	case unix.AF_INET:
		s4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		port := binary.BigEndian.Uint16((*[2]byte)(unsafe.Pointer(&s4.Port))[:])
		return netip.AddrPortFrom(netip.AddrFrom4(s4.Addr), port)
	case unix.AF_INET6:
		port := binary.BigEndian.Uint16((*[2]byte)(unsafe.Pointer(&sa.Port))[:])
		return netip.AddrPortFrom(netip.AddrFrom16(sa.Addr), port)
	}
	return netip.AddrPort{}
}

// putSockaddr encodes to for this socket's family; its length, 0 if the
// address cannot be reached from this socket.
func (r *Conn) putSockaddr(sa *unix.RawSockaddrInet6, to netip.AddrPort) uint32 {
	a := to.Addr()
	*sa = unix.RawSockaddrInet6{}
	if !r.inet6 {
		if !a.Unmap().Is4() {
			return 0
		}
		s4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		s4.Family = unix.AF_INET
		binary.BigEndian.PutUint16((*[2]byte)(unsafe.Pointer(&s4.Port))[:], to.Port())
		s4.Addr = a.Unmap().As4()
		return unix.SizeofSockaddrInet4
	}
	sa.Family = unix.AF_INET6
	binary.BigEndian.PutUint16((*[2]byte)(unsafe.Pointer(&sa.Port))[:], to.Port())
	sa.Addr = a.As16() // an IPv4 address becomes v4-mapped
	return unix.SizeofSockaddrInet6
}

// WriteBatch sends msgs with sendmmsg; it returns how many messages were
// sent (at most MaxMessages), and an error only when none was, for the
// first message: as sendmmsg does, the caller sends the rest again. A
// message to an address this socket's family cannot reach is refused
// (EAFNOSUPPORT) when its turn comes, so the messages before it leave.
func (r *Conn) WriteBatch(msgs []Message) (int, error) {
	if len(msgs) == 0 {
		return 0, nil
	}
	if len(msgs) > MaxMessages {
		msgs = msgs[:MaxMessages]
	}
	r.wmu.Lock()
	defer r.wmu.Unlock()
	if r.w == nil {
		r.w = &sendState{}
	}
	w := r.w
	nb := 0
	count := len(msgs)
	var refused error // the first message that cannot be sent: the ones before it are
	for i := range msgs {
		m := &msgs[i]
		l := r.putSockaddr(&w.names[i], m.To)
		switch {
		case l == 0:
			refused = opError("write", "sendmmsg", syscall.EAFNOSUPPORT)
		case nb+len(m.Buffers) > MaxBuffers:
			refused = ErrTooLarge
		}
		if refused != nil {
			count = i
			break
		}
		h := &w.hdrs[i]
		*h = unix.Mmsghdr{}
		h.Hdr.Name = (*byte)(unsafe.Pointer(&w.names[i]))
		h.Hdr.Namelen = l
		first := nb
		for _, b := range m.Buffers {
			v := &w.iovs[nb]
			*v = unix.Iovec{}
			if len(b) > 0 {
				v.Base = &b[0]
				v.SetLen(len(b))
			}
			nb++
		}
		if nb > first {
			h.Hdr.Iov = &w.iovs[first]
			h.Hdr.SetIovlen(nb - first)
		}
		if len(m.OOB) > 0 {
			h.Hdr.Control = &m.OOB[0]
			h.Hdr.SetControllen(len(m.OOB))
		}
	}
	if count == 0 {
		return 0, refused
	}
	r.wcount, r.wn, r.werrno = count, 0, 0
	ioSync.Add(1)
	err := r.rc.Write(r.writeFn)
	r.clear(count)
	clear(w.iovs[:nb])
	if err != nil {
		return 0, err
	}
	if r.werrno != 0 {
		return r.wn, opError("write", "sendmmsg", r.werrno)
	}
	return r.wn, nil
}

// clear drops the first n headers' pointers into the callers' buffers.
func (r *Conn) clear(n int) {
	for i := range n {
		r.w.hdrs[i] = unix.Mmsghdr{}
	}
}

func (r *Conn) write(fd uintptr) bool {
	for {
		n, _, e := syscall.RawSyscall6(unix.SYS_SENDMMSG, fd, uintptr(unsafe.Pointer(&r.w.hdrs[0])), uintptr(r.wcount), 0, 0, 0)
		switch e {
		case 0:
			r.wn = int(n)
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return false // the send buffer is full: wait until writable
		default:
			r.werrno = e
		}
		return true
	}
}
