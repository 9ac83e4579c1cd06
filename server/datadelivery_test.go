package server_test

import (
	"context"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/starling-rtc/starling/client"
	"github.com/starling-rtc/starling/protocol"
	"github.com/starling-rtc/starling/server"
	"github.com/starling-rtc/starling/sfu"
)

// dataInbox collects the data messages a client receives, in order.
type dataInbox struct {
	mu   sync.Mutex
	msgs []protocol.DataMessage
	more chan struct{}
}

func inbox(c *client.Client) *dataInbox {
	in := &dataInbox{more: make(chan struct{}, 1)}
	c.OnData(func(m protocol.DataMessage) {
		in.mu.Lock()
		in.msgs = append(in.msgs, m)
		in.mu.Unlock()
		select {
		case in.more <- struct{}{}:
		default:
		}
	})
	return in
}

// waitAll waits until the inbox holds want messages from `from` and checks
// they are exactly want, in order.
func (in *dataInbox) waitAll(t *testing.T, who, from string, want []string) {
	t.Helper()
	deadline := time.After(20 * time.Second)
	for {
		in.mu.Lock()
		var got []string
		for _, m := range in.msgs {
			if m.From == from {
				got = append(got, m.Payload)
			}
		}
		in.mu.Unlock()
		if len(got) >= len(want) {
			for i := range want {
				if got[i] != want[i] {
					t.Fatalf("%s: message %d is %q, want %q (lost or reordered): got %q", who, i, got[i], want[i], got)
				}
			}
			if len(got) > len(want) {
				t.Fatalf("%s: got %d messages, want %d: %q", who, len(got), len(want), got)
			}
			return
		}
		select {
		case <-in.more:
		case <-deadline:
			t.Fatalf("%s: got %d of %d data messages sent after its join result (first missing: %q): %q",
				who, len(got), len(want), want[len(got)], got)
		}
	}
}

// sendN sends n numbered messages from c and returns their texts.
func sendN(t *testing.T, c *client.Client, prefix string, n int) []string {
	t.Helper()
	var sent []string
	for i := 0; i < n; i++ {
		text := fmt.Sprintf("%s %d", prefix, i)
		// 30 s: the first send waits for the publisher's data channel,
		// which took more than 10 s under -race at load 34.
		if err := c.SendData(ctxT(t, 30*time.Second), text); err != nil {
			t.Fatalf("send %q: %v", text, err)
		}
		sent = append(sent, text)
	}
	return sent
}

// TestDataReachesNewcomer: messages sent right after someone's join result,
// before its subscriber `data` channel is open, still reach it, all of
// them and in order (issue 17, defect 1).
func TestDataReachesNewcomer(t *testing.T) {
	parallel(t)
	srv := startServer(t, nil)
	a := join(t, srv, "data-new", "a")
	for round := 0; round < 2; round++ {
		// A lazy publisher's Dial returns right after the join result: its
		// subscriber connection is still negotiating.
		b := join(t, srv, "data-new", fmt.Sprintf("b%d", round), func(o *client.Options) { o.LazyPublisher = true })
		in := inbox(b)
		sent := sendN(t, a, fmt.Sprintf("round %d", round), 20)
		in.waitAll(t, "the newcomer", a.ParticipantID(), sent)
		b.Close()
	}
}

// cutConn is a signaling connection whose writes vanish once the first
// `keep` have gone out (a network that drops the client's frames from
// then on).
type cutConn struct {
	net.Conn
	writes *atomic.Int32
	keep   int32
}

func (c cutConn) Write(p []byte) (int, error) {
	if c.writes.Add(1) > c.keep {
		return len(p), nil // lost on the way
	}
	return c.Conn.Write(p)
}

// joinCut joins a lazy publisher whose signaling frames after the join
// request are lost (so its answer to the first subscriber offer never
// arrives); a resume's socket works. The cut is at the connection's third
// write, not when join returns: the first answer could otherwise go out
// before the test cut the line.
func joinCut(t *testing.T, srv *server.Server, room, name string) *client.Client {
	t.Helper()
	var dials atomic.Int32
	return join(t, srv, room, name, func(o *client.Options) {
		o.LazyPublisher = true
		o.NetDialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
			if err != nil || dials.Add(1) > 1 {
				return c, err
			}
			// the WebSocket upgrade request, then the join request
			return cutConn{Conn: c, writes: new(atomic.Int32), keep: 2}, nil
		}
	})
}

// TestDataReachesResumedParticipant: a participant whose socket drops
// before its subscriber `data` channel opened gets, once it resumes, every
// message sent meanwhile; one whose channel was open gets those sent while
// it was away (issue 17, defect 1, "the same for resume").
func TestDataReachesResumedParticipant(t *testing.T) {
	parallelLong(t)
	srv := startServer(t, withResumeWindow(20*time.Second))
	a := join(t, srv, "data-resume", "a")

	// b's frames after its join request never reach the server: its answer
	// to the first subscriber offer is lost, so its data channel cannot open.
	b := joinCut(t, srv, "data-resume", "b")
	in := inbox(b)
	before := sendN(t, a, "before the drop", 10)
	b.CloseSignaling()
	p := srv.Rooms().Room("data-resume").Participant(b.ParticipantID())
	waitFor(t, 10*time.Second, "the server to see b away", func() bool { return p.Away() })
	away := sendN(t, a, "while away", 10)
	if err := b.Resume(ctxT(t, 15*time.Second)); err != nil {
		t.Fatalf("resume: %v", err)
	}
	after := sendN(t, a, "after the resume", 10)
	in.waitAll(t, "the resumed participant", a.ParticipantID(), append(append(before, away...), after...))

	// Now with its channel open: away again, and back.
	b.CloseSignaling()
	waitFor(t, 10*time.Second, "the server to see b away again", func() bool { return p.Away() })
	away2 := sendN(t, a, "away again", 10)
	if err := b.Resume(ctxT(t, 15*time.Second)); err != nil {
		t.Fatalf("second resume: %v", err)
	}
	all := append(append(append(before, away...), after...), away2...)
	in.waitAll(t, "the participant resumed twice", a.ParticipantID(), all)
}

// TestDataHoldingBounded: for a participant whose data channel does not
// open, the server holds at most sfu.MaxHeldDataMessages messages; the rest
// are dropped and counted in /metrics, and what it gets once its channel
// opens is the earliest messages, in order.
func TestDataHoldingBounded(t *testing.T) {
	parallel(t)
	srv := startServer(t, withResumeWindow(20*time.Second))
	a := join(t, srv, "data-bound", "a")
	// c's channel is open (it got a first message): c shows when the
	// server has relayed what a sent.
	c := join(t, srv, "data-bound", "c")
	inC := inbox(c)
	inC.waitAll(t, "the observer", a.ParticipantID(), sendN(t, a, "hello", 1))
	b := joinCut(t, srv, "data-bound", "b") // its answer never arrives: its data channel stays closed
	in := inbox(b)
	m0 := scrape(t, srv)
	const extra = 20
	sent := sendN(t, a, "held", sfu.MaxHeldDataMessages+extra)
	// The server relays a's messages one after another, each to c and b
	// before the next: once c has the one sent after them, every one was
	// held or dropped for b. (The metrics cannot tell: their counters are
	// the process's, and other tests add to them.)
	sync := sendN(t, a, "sync", 1)
	inC.waitAll(t, "the observer", a.ParticipantID(), append(append([]string{"hello 0"}, sent...), sync...))
	m := scrape(t, srv)
	if held := m["starling_data_messages_held_total"] - m0["starling_data_messages_held_total"]; held < sfu.MaxHeldDataMessages {
		t.Errorf("starling_data_messages_held_total grew by %v, want at least %d", held, sfu.MaxHeldDataMessages)
	}
	if dropped := m["starling_data_messages_dropped_total"] - m0["starling_data_messages_dropped_total"]; dropped < extra+1 {
		t.Errorf("starling_data_messages_dropped_total grew by %v, want at least %d", dropped, extra+1)
	}
	b.CloseSignaling()
	p := srv.Rooms().Room("data-bound").Participant(b.ParticipantID())
	waitFor(t, 10*time.Second, "the server to see b away", func() bool { return p.Away() })
	if err := b.Resume(ctxT(t, 15*time.Second)); err != nil {
		t.Fatalf("resume: %v", err)
	}
	in.waitAll(t, "the participant whose channel opened late", a.ParticipantID(), sent[:sfu.MaxHeldDataMessages])
	after := sendN(t, a, "after", 3) // the channel is open: nothing is held any more
	in.waitAll(t, "the participant whose channel opened late", a.ParticipantID(),
		append(sent[:sfu.MaxHeldDataMessages:sfu.MaxHeldDataMessages], after...))
}
