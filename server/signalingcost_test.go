package server_test

import (
	"context"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/starling-rtc/starling/client"
)

// wireCounter counts the bytes of one TCP connection in both directions.
type wireCounter struct {
	net.Conn
	in, out *atomic.Int64
}

func (c wireCounter) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	c.in.Add(int64(n))
	return n, err
}

func (c wireCounter) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	c.out.Add(int64(n))
	return n, err
}

type wireCount struct{ in, out atomic.Int64 }

func countingWire(w *wireCount) func(*client.Options) {
	return func(o *client.Options) {
		o.NetDialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			return wireCounter{Conn: c, in: &w.in, out: &w.out}, nil
		}
	}
}

// TestSignalingCost: a 1:1 call, both participants publishing audio and
// video and receiving the other's, until media flows both ways. Reports the
// signaling messages and bytes on the wire (TCP payload: WebSocket framing,
// the HTTP upgrade included) per participant, with and without
// permessage-deflate. Issue 5 aims at 10 kB per participant; with deflate
// this call takes ~9.9 kB: two subscriber offers each, the data channel's
// and one for both tracks (a subscriber offer waits for the other tracks
// of the same publisher offer to start, Participant.siblingsStarting;
// without that, 10.6 kB and more on a loaded machine, where the two tracks'
// first packets can come more than the 40 ms offer delay apart). The bound
// of 11 kB catches a regression (14 kB before offers were narrowed to each
// track's codec, 36 kB without deflate).
func TestSignalingCost(t *testing.T) {
	parallel(t)
	sideBySide(t, []string{"deflate", "plain"}, func(t *testing.T, i int) {
		compressed := i == 0
		name := "deflate"
		if !compressed {
			name = "plain"
		}
		srv := startServer(t, nil)
		var wires [2]wireCount
		var clients [2]*client.Client
		var recs [2]*recorder
		for i := range clients {
			clients[i] = join(t, srv, "cost", []string{"alice", "bob"}[i], countingWire(&wires[i]),
				func(o *client.Options) { o.NoCompression = !compressed })
			recs[i] = record(clients[i])
		}
		var media [2]*fakeMedia
		for i, c := range clients {
			media[i] = publishFake(t, c)
		}
		waitFor(t, 15*time.Second, "video both ways", func() bool {
			return len(recs[0].payloads(media[1].track("video").ID)) > 20 &&
				len(recs[1].payloads(media[0].track("video").ID)) > 20
		})
		time.Sleep(500 * time.Millisecond) // late candidates and notifications
		for i, c := range clients {
			sent, recv := c.MessageCounts()
			bytes := wires[i].in.Load() + wires[i].out.Load()
			t.Logf("%s, participant %d: %d messages (%d sent, %d received), %d bytes on the wire (%d up, %d down)",
				name, i, sent+recv, sent, recv, bytes, wires[i].out.Load(), wires[i].in.Load())
			if compressed && bytes > 11_000 {
				t.Errorf("participant %d: %d signaling bytes for a 1:1 call, want at most 11 kB", i, bytes)
			}
		}
	})
}
