//go:build !linux

package rawudp

import (
	"net"
	"net/netip"
)

// MaxMessages is the most messages one WriteBatch sends; MaxBuffers the
// most buffers in all of them.
const (
	MaxMessages = 64
	MaxBuffers  = MaxMessages * 64 // 64 segments each, the kernel's UDP_MAX_SEGMENTS
)

// Conn uses the net package's calls on this platform.
type Conn struct {
	c   *net.UDPConn
	buf []byte
}

// New wraps c.
func New(c *net.UDPConn) (*Conn, error) { return &Conn{c: c}, nil }

// ReadMsg reads one datagram into p and its control messages into oob.
func (r *Conn) ReadMsg(p, oob []byte) (n, oobn int, from netip.AddrPort, err error) {
	n, oobn, _, from, err = r.c.ReadMsgUDPAddrPort(p, oob)
	return n, oobn, from, err
}

// WriteBatch sends msgs one by one (their buffers joined), with the
// Linux version's results.
func (r *Conn) WriteBatch(msgs []Message) (int, error) {
	for i := range min(len(msgs), MaxMessages) {
		m := &msgs[i]
		b := r.buf[:0]
		for _, x := range m.Buffers {
			b = append(b, x...)
		}
		r.buf = b
		if _, _, err := r.c.WriteMsgUDPAddrPort(b, m.OOB, m.To); err != nil {
			if i > 0 {
				return i, nil // as sendmmsg: the caller resends from the failed one
			}
			return 0, err
		}
	}
	return min(len(msgs), MaxMessages), nil
}
