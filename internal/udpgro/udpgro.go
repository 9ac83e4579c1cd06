// Package udpgro reads UDP with generic receive offload: the kernel may hand
// a socket several datagrams of one sender as one buffer (a sender's UDP GSO
// run, kept whole on loopback; or datagrams a NIC driver coalesced), and
// Conn cuts it back into datagrams. One system call then reads a video
// frame instead of one per packet, and on loopback the sender no longer
// pays for splitting its segmented sends before they reach the socket.
//
// Conn is a drop-in *net.UDPConn for pion's ICE (a transport.UDPConn that
// also reads and writes with netip.AddrPort). Where the kernel has no
// UDP_GRO (not Linux, or older than 5.0) it reads datagram by datagram.
package udpgro

import (
	"net"
	"net/netip"
	"sync"

	"github.com/starling-rtc/starling/internal/rawudp"
)

// maxRead is one coalesced read: the kernel never builds more than one
// IP packet's worth.
const maxRead = 65536

// Conn is a UDP socket read with GRO.
type Conn struct {
	*net.UDPConn
	gro bool
	raw *rawudp.Conn // reads without waking the runtime's monitor (internal/rawudp)

	mu       sync.Mutex // one reader at a time; pion has one anyway
	buf, oob []byte
	off, end int // the rest of a coalesced read, not yet returned
	seg      int // its segment size
	from     netip.AddrPort
	merged   int // reads that returned more than one datagram (tests)
}

// Wrap turns on GRO for c, if the kernel has it.
func Wrap(c *net.UDPConn) *Conn {
	w := &Conn{UDPConn: c, gro: enable(c)}
	if raw, err := rawudp.New(c); err == nil {
		w.raw = raw
	}
	if w.gro {
		w.buf = make([]byte, maxRead)
		w.oob = make([]byte, oobSize)
	}
	return w
}

// GRO reports whether the kernel may coalesce datagrams for this socket.
func (c *Conn) GRO() bool { return c.gro }

// ReadFromAddrPort returns the next datagram.
func (c *Conn) ReadFromAddrPort(p []byte) (int, netip.AddrPort, error) {
	if !c.gro {
		if c.raw != nil {
			n, _, from, err := c.raw.ReadMsg(p, nil)
			return n, from, err
		}
		return c.UDPConn.ReadFromUDPAddrPort(p)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.off >= c.end {
		var n, oobn int
		var from netip.AddrPort
		var err error
		if c.raw != nil {
			n, oobn, from, err = c.raw.ReadMsg(c.buf, c.oob)
		} else {
			n, oobn, _, from, err = c.ReadMsgUDPAddrPort(c.buf, c.oob)
		}
		if err != nil {
			return 0, from, err
		}
		seg := segmentSize(c.oob[:oobn])
		if seg <= 0 || seg > n {
			seg = n
		} else if seg < n {
			c.merged++
		}
		c.off, c.end, c.seg, c.from = 0, n, seg, from
	}
	end := min(c.off+c.seg, c.end)
	n := copy(p, c.buf[c.off:end])
	c.off = end
	return n, c.from, nil
}

// ReadFromUDPAddrPort is ReadFromAddrPort.
func (c *Conn) ReadFromUDPAddrPort(p []byte) (int, netip.AddrPort, error) {
	return c.ReadFromAddrPort(p)
}

// ReadFrom returns the next datagram and its sender.
func (c *Conn) ReadFrom(p []byte) (int, net.Addr, error) {
	n, from, err := c.ReadFromAddrPort(p)
	if err != nil {
		return n, nil, err
	}
	return n, net.UDPAddrFromAddrPort(from), nil
}

// ReadFromUDP returns the next datagram and its sender.
func (c *Conn) ReadFromUDP(p []byte) (int, *net.UDPAddr, error) {
	n, from, err := c.ReadFromAddrPort(p)
	if err != nil {
		return n, nil, err
	}
	return n, net.UDPAddrFromAddrPort(from), nil
}

// Read returns the next datagram.
func (c *Conn) Read(p []byte) (int, error) {
	n, _, err := c.ReadFromAddrPort(p)
	return n, err
}

// WriteToAddrPort sends one datagram.
func (c *Conn) WriteToAddrPort(p []byte, to netip.AddrPort) (int, error) {
	return c.WriteToUDPAddrPort(p, to)
}
