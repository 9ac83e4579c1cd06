package webhook

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/starling-rtc/starling/room"
)

const secret = "webhook-secret-webhook-secret-0123"

type received struct {
	event    Event
	delivery string
	key      string
	sigOK    bool
}

// receiver answers with the given statuses in turn (then 200) and records
// every request.
type receiver struct {
	mu       sync.Mutex
	statuses []int
	got      []received
	srv      *httptest.Server
	block    chan struct{} // when set, requests wait on it
}

func newReceiver(t *testing.T, statuses ...int) *receiver {
	r := &receiver{statuses: statuses}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if r.block != nil {
			<-r.block
		}
		body, _ := io.ReadAll(req.Body)
		var e Event
		_ = json.Unmarshal(body, &e)
		r.mu.Lock()
		r.got = append(r.got, received{event: e, delivery: req.Header.Get(HeaderDelivery), key: req.Header.Get(HeaderKey),
			sigOK: Verify(secret, body, req.Header.Get(HeaderSignature)) && req.Header.Get(HeaderEvent) == e.Event})
		status := http.StatusOK
		if len(r.statuses) > 0 {
			status, r.statuses = r.statuses[0], r.statuses[1:]
		}
		r.mu.Unlock()
		w.WriteHeader(status)
	}))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) requests() []received {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]received(nil), r.got...)
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func closeNotifier(t *testing.T, n *Notifier) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := n.Close(ctx); err != nil {
		t.Errorf("Close: %v", err)
	}
}

// TestDeliveryRetryAndSignature: a 500 is retried with the same delivery id,
// every request is signed, and events arrive in order.
func TestDeliveryRetryAndSignature(t *testing.T) {
	r := newReceiver(t, 500, 503)
	n := New(Config{URLs: []string{r.srv.URL}, APIKey: "APIk", Secret: secret, Backoff: 10 * time.Millisecond})
	n.RoomStarted("r1", "RM_1")
	n.ParticipantJoined(room.ParticipantEvent{Room: "r1", RoomSID: "RM_1", ParticipantID: "PA_1", Identity: "alice", Name: "Alice"})
	n.ParticipantLeft(room.ParticipantEvent{Room: "r1", RoomSID: "RM_1", ParticipantID: "PA_1", Identity: "alice"}, "kicked")
	closeNotifier(t, n)

	got := r.requests()
	if len(got) != 5 { // room_started three times (500, 503, 200), then two
		t.Fatalf("%d requests, want 5: %+v", len(got), got)
	}
	for i, g := range got {
		if !g.sigOK || g.key != "APIk" {
			t.Errorf("request %d: signature ok %v, key %q", i, g.sigOK, g.key)
		}
	}
	if got[0].delivery != got[1].delivery || got[1].delivery != got[2].delivery || got[0].event.ID != got[0].delivery {
		t.Errorf("retries changed the delivery id: %q %q %q", got[0].delivery, got[1].delivery, got[2].delivery)
	}
	want := []string{RoomStarted, RoomStarted, RoomStarted, ParticipantJoin, ParticipantLeave}
	for i, w := range want {
		if got[i].event.Event != w {
			t.Fatalf("request %d is %q, want %q", i, got[i].event.Event, w)
		}
	}
	left := got[4].event
	if left.Reason != "kicked" || left.Participant == nil || left.Participant.Identity != "alice" || left.Room.SID != "RM_1" || left.CreatedAt == 0 {
		t.Errorf("participant_left event = %+v", left)
	}
	if n.delivered.Load() != 3 || n.retries.Load() != 2 || n.failed.Load() != 0 {
		t.Errorf("delivered %d retries %d failed %d", n.delivered.Load(), n.retries.Load(), n.failed.Load())
	}
}

// TestGiveUp: attempts are bounded; a 4xx is not retried.
func TestGiveUp(t *testing.T) {
	r := newReceiver(t, 500, 500, 500, 400)
	n := New(Config{URLs: []string{r.srv.URL}, Secret: secret, Backoff: time.Millisecond, MaxAttempts: 3})
	n.RoomStarted("a", "RM_a") // 500 ×3: given up
	n.RoomClosed("a", "RM_a")  // 400: given up at once
	n.RoomStarted("b", "RM_b") // 200
	closeNotifier(t, n)
	if got := len(r.requests()); got != 5 {
		t.Fatalf("%d requests, want 5", got)
	}
	if n.failed.Load() != 2 || n.delivered.Load() != 1 {
		t.Fatalf("failed %d delivered %d", n.failed.Load(), n.delivered.Load())
	}
}

// TestNeverBlocks: with the receiver stuck, Emit returns at once and drops
// what does not fit the queue.
func TestNeverBlocks(t *testing.T) {
	r := newReceiver(t)
	r.block = make(chan struct{})
	n := New(Config{URLs: []string{r.srv.URL}, Secret: secret, QueueSize: 4, Timeout: 10 * time.Second})
	start := time.Now()
	for i := 0; i < 1000; i++ {
		n.RoomStarted("r", "RM")
	}
	if d := time.Since(start); d > 200*time.Millisecond {
		t.Fatalf("1000 Emits took %v with a stuck receiver", d)
	}
	waitUntil(t, "drops counted", func() bool { return n.dropped.Load() >= 1000-4-1 })
	close(r.block)
	closeNotifier(t, n)
	if got := len(r.requests()); got < 4 || got > 5 {
		t.Fatalf("%d delivered, want the 4 or 5 that fit", got)
	}
}

// TestCloseAbandons: Close gives up when its context ends.
func TestCloseAbandons(t *testing.T) {
	r := newReceiver(t, 500, 500, 500, 500, 500)
	n := New(Config{URLs: []string{r.srv.URL}, Secret: secret, Backoff: time.Hour})
	n.RoomStarted("r", "RM")
	waitUntil(t, "first attempt", func() bool { return len(r.requests()) == 1 })
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := n.Close(ctx); err == nil {
		t.Fatal("Close reported success with an undelivered event")
	}
	n.RoomStarted("late", "RM") // after Close: ignored, no panic
}

func TestVerify(t *testing.T) {
	body := []byte(`{"event":"room_started"}`)
	sig := Sign(secret, body)
	if !Verify(secret, body, sig) || Verify(secret, append(body, ' '), sig) || Verify("other", body, sig) || Verify(secret, body, "") {
		t.Fatal("Verify accepts what it should not, or refuses a good signature")
	}
}
