package sfu

import (
	"errors"
	"io"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"

	"github.com/pion/ice/v4"
)

// restartMux is the shared UDP mux as pion sees it: pion's own mux, whose
// connections (one per ICE session and local address) it hands out wrapped
// in restartConn.
//
// Why: an ICE restart (pion's Agent.Restart) closes the old session's
// connections, and a write that took the selected candidate pair just
// before the restart but reaches the connection after it fails with
// io.ErrClosedPipe (pion's candidate passes that error on on purpose).
// When that write was SCTP's (a data channel's), SCTP's write loop takes
// it as fatal and closes the DTLS transport, and pion then closes the
// whole peer connection ("Closing PeerConnection from DTLS CloseNotify"):
// the participant is ended and the data messages in flight are lost. A
// starved machine stretches the gap between the two, which is how loaded
// soaks met it (docs/robustness.md). On a real network a datagram sent
// while a path changes is lost, not fatal: restartConn makes this write
// one, so DTLS and SCTP retransmit over the new pair.
type restartMux struct {
	ice.UDPMux
	restartCounts
}

// restartCounts is what a restart-safe mux's connections share.
type restartCounts struct {
	// dropped counts writes restartConn turned into lost datagrams.
	dropped atomic.Uint64
	// writeHook, when set (by tests, before the first connection), runs
	// before every write pion makes through the mux's connections: a test
	// holds one there across an ICE restart.
	writeHook func(b []byte)
}

func newRestartMux(m ice.UDPMux) *restartMux { return &restartMux{UDPMux: m} }

// GetConn wraps pion's connection. The wrapper keeps pion's allocation-free
// path (ice.AddrPortReaderWriter) when the connection has it: pion looks
// for it once per candidate, then reads and writes through it.
func (m *restartMux) GetConn(ufrag string, addr net.Addr) (net.PacketConn, error) {
	c, err := m.UDPMux.GetConn(ufrag, addr)
	if err != nil {
		return nil, err
	}
	rc := &restartConn{PacketConn: c, mux: &m.restartCounts}
	if ap, ok := c.(ice.AddrPortReaderWriter); ok {
		return &restartAddrPortConn{restartConn: rc, ap: ap}, nil
	}
	return rc, nil
}

// restartConn is one of pion's mux connections whose writes, once pion has
// closed it, are lost datagrams rather than errors.
//
// pion's own connection also has an unexported hook pion calls as it closes
// a candidate (abortWrite: after a grace period it expires the shared
// socket's write deadline if a write on the closed connection is still
// blocked in the kernel). A wrapper cannot carry an unexported method, so
// that kick is lost: such a write waits for the socket's send buffer to
// drain, as every other write on the socket does. Close still cancels the
// connection's pending reads, which is what pion waits for.
type restartConn struct {
	net.PacketConn
	mux    *restartCounts
	closed atomic.Bool // pion closed it: its candidate is gone (ICE restart or close)
}

// Close marks the connection closed before pion's Close makes its writes
// fail, so every write that fails because of it is seen as lost.
func (c *restartConn) Close() error {
	c.closed.Store(true)
	return c.PacketConn.Close()
}

func (c *restartConn) WriteTo(b []byte, addr net.Addr) (int, error) {
	if h := c.mux.writeHook; h != nil {
		h(b)
	}
	n, err := c.PacketConn.WriteTo(b, addr)
	return c.result(b, n, err)
}

// result turns a write's failure because pion closed this connection into
// a datagram lost on the way. Any other error (the whole mux closed when
// the server stops, a socket error) is passed on.
func (c *restartConn) result(b []byte, n int, err error) (int, error) {
	if err != nil && c.closed.Load() && errors.Is(err, io.ErrClosedPipe) {
		c.mux.dropped.Add(1)
		counters.restartWritesDropped.Add(1)
		return len(b), nil
	}
	return n, err
}

// restartAddrPortConn is restartConn for a connection with pion's
// allocation-free reads and writes.
type restartAddrPortConn struct {
	*restartConn
	ap ice.AddrPortReaderWriter
}

func (c *restartAddrPortConn) ReadFromAddrPort(b []byte) (int, netip.AddrPort, error) {
	return c.ap.ReadFromAddrPort(b)
}

func (c *restartAddrPortConn) WriteToAddrPort(b []byte, addr netip.AddrPort) (int, error) {
	if h := c.mux.writeHook; h != nil {
		h(b)
	}
	n, err := c.ap.WriteToAddrPort(b, addr)
	return c.result(b, n, err)
}

// restartTCPMux is restartMux for ICE-TCP. There pion's Agent.Restart
// closes the old session's connections in the mux (RemoveConnByUfrag),
// before it unsets the selected pair, so the wrapper marks them closed
// there.
type restartTCPMux struct {
	ice.TCPMux
	restartCounts
	mu    sync.Mutex
	conns map[string][]*restartConn // by ufrag, until pion removes the ufrag
}

func newRestartTCPMux(m ice.TCPMux) *restartTCPMux {
	return &restartTCPMux{TCPMux: m, conns: map[string][]*restartConn{}}
}

func (m *restartTCPMux) GetConnByUfrag(ufrag string, isIPv6 bool, local net.IP) (net.PacketConn, error) {
	c, err := m.TCPMux.GetConnByUfrag(ufrag, isIPv6, local)
	if err != nil {
		return nil, err
	}
	rc := &restartConn{PacketConn: c, mux: &m.restartCounts}
	m.mu.Lock()
	m.conns[ufrag] = append(m.conns[ufrag], rc)
	m.mu.Unlock()
	return rc, nil
}

// LocalAddr is the listener's address. pion asks a TCP mux for it (an
// optional method, not in ice.TCPMux) to advertise only the address the
// listener is bound to: without it a server bound to one IP would offer
// passive candidates on every interface.
func (m *restartTCPMux) LocalAddr() net.Addr {
	if a, ok := m.TCPMux.(interface{ LocalAddr() net.Addr }); ok {
		return a.LocalAddr()
	}
	return nil
}

// RemoveConnByUfrag is called by pion as a session restarts or closes
// (every agent's Close calls it, so the map does not grow).
func (m *restartTCPMux) RemoveConnByUfrag(ufrag string) {
	m.mu.Lock()
	conns := m.conns[ufrag]
	delete(m.conns, ufrag)
	m.mu.Unlock()
	for _, c := range conns {
		c.closed.Store(true)
	}
	m.TCPMux.RemoveConnByUfrag(ufrag)
}
