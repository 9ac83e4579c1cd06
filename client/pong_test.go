package client_test

import (
	"context"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/starling-rtc/starling/client"
	"github.com/starling-rtc/starling/config"
	"github.com/starling-rtc/starling/protocol"
)

// TestLatePongKeepsSocketWritable: the pong to a server ping is written
// late, as on a CPU-starved machine (TestSoak beside two busy loops): the
// socket must stay writable. With a pong deadline of 1 s, the pong's write
// failed with a timeout, gorilla kept that error for the socket, and every
// later request failed at once ("write tcp ...: i/o timeout") while the
// socket still read: the soak's subscriber never sent its answer. The
// stall is simulated in the connection's Write (1.5 s before the pong goes
// out); the test then waits for that pong, not for a time.
func TestLatePongKeepsSocketWritable(t *testing.T) {
	t.Parallel()
	// The server pings every 500 ms, not every 10 s (the default, which the
	// test used to wait out); the first pong after arming still goes out
	// 1.5 s late, past the 1 s deadline of the bug.
	srv := startServer(t, func(c *config.Config) { c.Limits.PingInterval = config.Duration(500 * time.Millisecond) })
	api, err := client.LoopbackAPI()
	if err != nil {
		t.Fatal(err)
	}
	stalled := &stallConn{ponged: make(chan struct{})}
	c, err := client.Dial(ctxT(t, 30*time.Second), srv.SignalingURL(), "late-pong", client.Options{
		Name: "slow", API: api, LazyPublisher: true,
		NetDialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			nc, err := (&net.Dialer{}).DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			stalled.Conn = nc
			return stalled, nil
		},
	})
	if err != nil {
		t.Fatalf("join: %v", err)
	}
	t.Cleanup(c.Close)
	stalled.armed.Store(true)
	wait(t, stalled.ponged, 30*time.Second, "the server's ping and the client's late pong")
	if err := c.Call(ctxT(t, 10*time.Second), protocol.MethodPing, protocol.Empty{}, nil); err != nil {
		t.Fatalf("a request after the late pong: %v", err)
	}
}

// stallConn delays the first pong written once armed by 1.5 s (a starved
// writer), then reports it.
type stallConn struct {
	net.Conn
	armed  atomic.Bool
	once   sync.Once
	ponged chan struct{}
}

func (c *stallConn) Write(p []byte) (int, error) {
	const pong = 0x8a // FIN and opcode 0xA: a pong frame
	if len(p) > 0 && p[0] == pong && c.armed.Load() {
		stall := false
		c.once.Do(func() { stall = true })
		if stall {
			time.Sleep(1500 * time.Millisecond) // the simulated starvation, not a wait
			n, err := c.Conn.Write(p)
			close(c.ponged)
			return n, err
		}
	}
	return c.Conn.Write(p)
}
