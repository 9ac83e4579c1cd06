package server

import (
	"sync"

	"github.com/starling-rtc/starling/signaling"
)

// sockets tracks the node's signaling sockets: http.Server.Shutdown does not
// see upgraded connections, so sockets that never joined (and so got no
// `leave` from the rooms) would otherwise stay open after shutdown.
type sockets struct {
	mu    sync.Mutex
	conns map[*signaling.Conn]struct{}
	shut  bool
}

// trackedSession removes its socket from the set when it closes.
type trackedSession struct {
	*signaling.Session
	set  *sockets
	conn *signaling.Conn
}

func (t trackedSession) Closed() {
	t.set.mu.Lock()
	delete(t.set.conns, t.conn)
	t.set.mu.Unlock()
	t.Session.Closed()
}

// track registers a socket's session; after shutdown the socket is closed at once.
func (s *sockets) track(c *signaling.Conn, sess *signaling.Session) signaling.Dispatcher {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conns == nil {
		s.conns = map[*signaling.Conn]struct{}{}
	}
	if s.shut {
		c.Close(1001, "server shutting down")
	} else {
		s.conns[c] = struct{}{}
	}
	return trackedSession{Session: sess, set: s, conn: c}
}

// closeAll closes every socket still open (1001 going away).
func (s *sockets) closeAll() {
	s.mu.Lock()
	s.shut = true
	conns := make([]*signaling.Conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	for _, c := range conns {
		c.Close(1001, "server shutting down")
	}
}
