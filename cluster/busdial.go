package cluster

import (
	"net"
	"sync"
	"time"
)

// busDialer opens the node's TCP connections to an external NATS (the
// embedded server's connection is in-process and dials nothing), closing
// the connection it handed out last before it dials the next.
//
// nats.go (v1.55.0, unchanged in v1.56.0) drops a reconnect attempt whose
// handshake failed without closing its socket (doReconnect: an error from
// processConnectInit goes on to the next attempt): a NATS address that
// accepts and closes at once (a load balancer or proxy with no NATS behind
// it, a NATS shutting down) or accepts and stays silent past the connect
// timeout (a starved NATS) left one open socket per attempt, every
// ReconnectWait (250 ms) for as long as it lasted, closed only when the
// garbage collector happened to finalise it. nats.go asks for a connection
// only when the one before is of no more use (it closes a live one before
// it reconnects; a first connection that failed it closes itself), so
// closing the last one here closes what an attempt left behind.
type busDialer struct {
	d    net.Dialer
	mu   sync.Mutex
	last net.Conn
}

func newBusDialer(timeout time.Duration) *busDialer {
	return &busDialer{d: net.Dialer{Timeout: timeout}}
}

// Dial is nats.CustomDialer's.
func (b *busDialer) Dial(network, address string) (net.Conn, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.last != nil {
		_ = b.last.Close() // already closed unless an attempt left it
		b.last = nil
	}
	c, err := b.d.Dial(network, address)
	if err != nil {
		return nil, err
	}
	b.last = c
	return c, nil
}
