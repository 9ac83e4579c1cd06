package sfu

import (
	"net"
	"sync"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/logging"
)

// ICE-TCP: pion's TCPMuxDefault, on a listener that remembers the
// connections it accepted so that Engine.Close can end them.
//
// pion's Close (ice v4.4.8) closes the listener and the connections it has
// registered by ufrag, then waits for every goroutine of the mux. Two kinds
// outlived it, each for pion's 30 s default, and so did a server's
// shutdown (a drained node exited 32 s after SIGTERM, seen with Chromium
// in web/browsertest: its checks of a closed connection's TCP candidate
// kept coming): a connection accepted whose first STUN message had not
// come yet (the read waits FirstStunBindTimeout), and a connection whose
// first message named an unknown ufrag and was registered just after Close
// took the mux's lists (it waits AliveDurationForConnFromStun). Closing the
// accepted connections first ends the first kind at once and leaves the
// second a window of a few instructions; tcpUnknownUfragAlive bounds what
// is left.

// tcpUnknownUfragAlive is how long a TCP connection whose first STUN
// message names a ufrag no connection has stays open unclaimed. A client
// learns a ufrag from our SDP, written after its agent asked the mux for
// it; only checks of a closed (or restarted) connection come unclaimed.
const tcpUnknownUfragAlive = 5 * time.Second

// tcpFirstMessageWait is how long an accepted TCP connection may stay
// silent before its first STUN message (pion's default: 30 s).
const tcpFirstMessageWait = 10 * time.Second

func newTCPMux(logger logging.LeveledLogger, ln *trackedListener) ice.TCPMux {
	return ice.NewTCPMuxDefault(ice.TCPMuxParams{
		Listener:                     ln,
		Logger:                       logger,
		ReadBufferSize:               64,
		WriteBufferSize:              4 * 1024 * 1024, // as webrtc.NewICETCPMux: pion/ice's recommendation
		FirstStunBindTimeout:         tcpFirstMessageWait,
		AliveDurationForConnFromStun: tcpUnknownUfragAlive,
	})
}

// trackedListener is a net.Listener that can close every connection it
// accepted that is still open.
type trackedListener struct {
	net.Listener
	mu     sync.Mutex
	conns  map[*trackedConn]struct{}
	closed bool
}

func newTrackedListener(ln net.Listener) *trackedListener {
	return &trackedListener{Listener: ln, conns: map[*trackedConn]struct{}{}}
}

func (l *trackedListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		_ = c.Close()
		return nil, net.ErrClosed
	}
	tc := &trackedConn{Conn: c, l: l}
	l.conns[tc] = struct{}{}
	return tc, nil
}

// closeAll closes the listener and every connection it accepted.
func (l *trackedListener) closeAll() {
	l.mu.Lock()
	l.closed = true
	conns := make([]*trackedConn, 0, len(l.conns))
	for c := range l.conns {
		conns = append(conns, c)
	}
	l.mu.Unlock()
	_ = l.Listener.Close()
	for _, c := range conns {
		_ = c.Close()
	}
}

type trackedConn struct {
	net.Conn
	l *trackedListener
}

func (c *trackedConn) Close() error {
	c.l.mu.Lock()
	delete(c.l.conns, c)
	c.l.mu.Unlock()
	return c.Conn.Close()
}
