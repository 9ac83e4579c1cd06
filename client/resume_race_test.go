package client_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/starling-rtc/starling/client"
	"github.com/starling-rtc/starling/config"
	"github.com/starling-rtc/starling/internal/testutil/testnode"
	"github.com/starling-rtc/starling/protocol"
	"github.com/starling-rtc/starling/server"
)

// Races of the Go client's resume against its socket readers (issue 17:
// a soak publisher was gone after a resume it had reported, and the data
// messages it sent next were lost). The tests run a real server on
// loopback and order the client's steps with test hooks (export_test.go),
// so each race happens every time; every wait is for an event.

func startServer(t *testing.T, opts ...func(*config.Config)) *server.Server {
	t.Helper()
	cfg := testnode.Config()
	cfg.RTC.CongestionControl = false
	cfg.Room.EmptyTimeout = config.Duration(100 * time.Millisecond)
	cfg.Room.NegotiationTimeout = config.Duration(30 * time.Second) // a starved machine answers late
	cfg.Room.ResumeWindow = config.Duration(20 * time.Second)
	for _, o := range opts {
		o(&cfg)
	}
	return testnode.Start(t, cfg)
}

func dial(t *testing.T, srv *server.Server, room, name string, autoResume bool) *client.Client {
	t.Helper()
	api, err := client.LoopbackAPI()
	if err != nil {
		t.Fatal(err)
	}
	c, err := client.Dial(ctxT(t, 30*time.Second), srv.SignalingURL(), room, client.Options{Name: name, API: api, AutoResume: autoResume})
	if err != nil {
		t.Fatalf("%s joins: %v", name, err)
	}
	t.Cleanup(c.Close)
	return c
}

func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func wait(t *testing.T, ch <-chan struct{}, d time.Duration, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(d):
		t.Fatalf("timed out after %v waiting for %s", d, what)
	}
}

// within reports whether ch closed within d (for hooks, which run off the
// test's goroutine and so may not call t.Fatal).
func within(ch <-chan struct{}, d time.Duration) bool {
	select {
	case <-ch:
		return true
	case <-time.After(d):
		return false
	}
}

func count(evs []client.Event, method string) int {
	n := 0
	for _, e := range evs {
		if e.Method == method {
			n++
		}
	}
	return n
}

func methods(evs []client.Event) []string {
	out := make([]string, 0, len(evs))
	for _, e := range evs {
		out = append(out, e.Method)
	}
	return out
}

// inbox collects the data messages c receives from participant from.
type inbox struct {
	mu   sync.Mutex
	got  []string
	more chan struct{}
}

func newInbox(c *client.Client, from string) *inbox {
	in := &inbox{more: make(chan struct{}, 1)}
	c.OnData(func(m protocol.DataMessage) {
		if m.From != from {
			return
		}
		in.mu.Lock()
		in.got = append(in.got, m.Payload)
		in.mu.Unlock()
		select {
		case in.more <- struct{}{}:
		default:
		}
	})
	return in
}

// waitAll waits until every message of want has arrived, in order.
func (in *inbox) waitAll(t *testing.T, want []string) {
	t.Helper()
	deadline := time.After(20 * time.Second)
	for {
		in.mu.Lock()
		got := slices.Clone(in.got)
		in.mu.Unlock()
		if len(got) >= len(want) {
			if !slices.Equal(got[:len(want)], want) {
				t.Fatalf("data messages: got %q, want %q", got, want)
			}
			return
		}
		select {
		case <-in.more:
		case <-deadline:
			t.Fatalf("data messages lost: got %d of %d: %q", len(got), len(want), got)
		}
	}
}

func send(t *testing.T, c *client.Client, prefix string, n int) []string {
	t.Helper()
	var sent []string
	for i := range n {
		text := fmt.Sprintf("%s %d", prefix, i)
		if err := c.SendData(ctxT(t, 10*time.Second), text); err != nil {
			t.Fatalf("send %q: %v", text, err)
		}
		sent = append(sent, text)
	}
	return sent
}

// TestResumeNotReportedForEndedSession: the server ends the session (here
// a kick: `leave`, then the close) while a resume is under way, after its
// join result. The client reported EventResumed, and only then found the
// socket gone: the soak's publisher went on as if resumed, its calls
// failed with "websocket: close sent" and its data messages were lost.
// Now the attempt fails and the client reports EventResumeFailed.
func TestResumeNotReportedForEndedSession(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	a := dial(t, srv, "resume-ended", "a", true)
	id := a.ParticipantID()
	var once sync.Once
	client.SetTestHooks(a, client.TestHooks{BeforeResumed: func() {
		once.Do(func() {
			done := client.SocketDone(a)
			srv.Rooms().Room("resume-ended").Participant(id).Kick()
			if !within(done, 15*time.Second) {
				t.Error("the kicked session's socket never closed")
			}
		})
	}})
	a.CloseSignaling()
	if _, err := a.WaitEvent(ctxT(t, 30*time.Second), client.EventResumeFailed, nil); err != nil {
		t.Fatalf("%v; events: %v", err, methods(a.Events()))
	}
	wait(t, a.Done(), 15*time.Second, "the session to end")
	if n := count(a.Events(), client.EventResumed); n != 0 {
		t.Fatalf("a kicked session was reported resumed: %v", methods(a.Events()))
	}
}

// TestResumeFailedAttemptStartsNoSecondLoop: a resume attempt fails after
// its join (its new socket drops), and that socket's reader reports the
// loss only after the attempt has given up on it. The reader took the
// loss for a new one: a second EventDisconnected and a second resume loop,
// which, with the first loop retrying too, resumed the session twice (the
// second time from the healthy socket the first had just brought up, so
// calls in flight on it failed). Now the failed attempt's socket is its
// own business: one loss, one resume, and every data message the
// participant sends before, during and after it arrives.
func TestResumeFailedAttemptStartsNoSecondLoop(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	a := dial(t, srv, "resume-loop", "a", true)
	b := dial(t, srv, "resume-loop", "b", false)
	in := newInbox(b, a.ParticipantID())
	sent := send(t, a, "before", 5)

	failed := make(chan struct{}) // the first attempt has failed
	lost := make(chan struct{})   // its socket's reader has acted on the loss
	var firstResume, firstFail sync.Once
	var during []string
	client.SetTestHooks(a, client.TestHooks{
		BeforeResumed: func() {
			firstResume.Do(func() {
				// The first attempt's socket drops right after its join.
				done := client.SocketDone(a)
				for i := range 5 {
					text := fmt.Sprintf("during %d", i)
					if err := a.SendData(context.Background(), text); err != nil {
						t.Errorf("send %q: %v", text, err)
					}
					during = append(during, text)
				}
				a.CloseSignaling()
				if !within(done, 15*time.Second) {
					t.Error("the first attempt's socket never closed")
				}
			})
		},
		AttemptFailed: func(error) {
			firstFail.Do(func() {
				close(failed)
				if !within(lost, 30*time.Second) {
					t.Error("the failed attempt's socket reader never ended")
				}
			})
		},
		SocketLost: func(n int, lostFn func()) {
			if n != 2 { // 1: the socket CloseSignaling cut; 3 on: later ones
				lostFn()
				return
			}
			// The failed attempt's socket: its reader acts once the
			// attempt has failed.
			if !within(failed, 30*time.Second) {
				t.Error("the first resume attempt never failed")
			}
			lostFn()
			close(lost)
		},
	})
	a.CloseSignaling()
	if _, err := a.WaitEvent(ctxT(t, 30*time.Second), client.EventResumed, nil); err != nil {
		t.Fatalf("%v; events: %v", err, methods(a.Events()))
	}
	sent = append(sent, during...)
	sent = append(sent, send(t, a, "after", 5)...)
	in.waitAll(t, sent)
	// A round trip on the resumed socket, then Close, which waits for every
	// resume loop: the events are final.
	if err := a.Call(ctxT(t, 10*time.Second), protocol.MethodPing, protocol.Empty{}, nil); err != nil {
		t.Fatalf("ping after the resume: %v", err)
	}
	a.Close()
	evs := a.Events()
	if count(evs, client.EventDisconnected) != 1 || count(evs, client.EventResumed) != 1 || count(evs, client.EventResumeFailed) != 0 {
		t.Fatalf("one drop must give one disconnection and one resume: %v", methods(evs))
	}
}
