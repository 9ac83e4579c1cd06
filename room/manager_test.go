package room

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/starling-rtc/starling/protocol"
	"github.com/starling-rtc/starling/sfu"
)

// These tests drive rooms directly, without signaling or media: a fake
// Peer records what the room tells a participant, and the peer
// connections are real but never connect (no client answers on the
// network). They check in milliseconds room logic that server/ checks
// through WebSocket clients and media: joins and leaves announced, rooms
// closing when empty, duplicate identities, limits, the negotiation
// timeout and shutdown.

// fakePeer is a room.Peer that records notifications and the end.
type fakePeer struct {
	mu      sync.Mutex
	notes   []fakeNote
	ended   string
	changed chan struct{} // signalled on every notification or end
}

type fakeNote struct {
	method string
	params json.RawMessage
}

func newFakePeer() *fakePeer { return &fakePeer{changed: make(chan struct{}, 1)} }

func (f *fakePeer) Notify(method string, params any) {
	raw, _ := json.Marshal(params)
	f.mu.Lock()
	f.notes = append(f.notes, fakeNote{method, raw})
	f.mu.Unlock()
	f.signal()
}

func (f *fakePeer) End(reason string) {
	f.mu.Lock()
	if f.ended == "" {
		f.ended = reason
	}
	f.mu.Unlock()
	f.signal()
}

func (f *fakePeer) signal() {
	select {
	case f.changed <- struct{}{}:
	default:
	}
}

// wait waits (up to 10 s) until cond holds over what the peer got.
func (f *fakePeer) wait(t *testing.T, what string, cond func(notes []fakeNote, ended string) bool) {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		f.mu.Lock()
		ok := cond(f.notes, f.ended)
		f.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-f.changed:
		case <-timeout:
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// waitNote waits for a notification with method whose params decode into
// v and satisfy match.
func waitNote[T any](t *testing.T, f *fakePeer, method string, match func(T) bool) T {
	t.Helper()
	var got T
	f.wait(t, method, func(notes []fakeNote, _ string) bool {
		for _, n := range notes {
			var v T
			if n.method == method && json.Unmarshal(n.params, &v) == nil && match(v) {
				got = v
				return true
			}
		}
		return false
	})
	return got
}

func (f *fakePeer) waitEnd(t *testing.T, reason string) {
	t.Helper()
	f.wait(t, "end "+reason, func(_ []fakeNote, ended string) bool { return ended != "" })
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.ended != reason {
		t.Fatalf("session ended with %q, want %q", f.ended, reason)
	}
}

// newTestManager makes a manager on a loopback engine, shut down and
// closed with the test.
func newTestManager(t *testing.T, tune func(*Config)) *Manager {
	t.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	e, err := sfu.NewEngine(sfu.EngineConfig{BindIP: "127.0.0.1", TCPPort: -1, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{Engine: e, EmptyTimeout: 50 * time.Millisecond, NegotiationTimeout: time.Minute, Logger: log}
	if tune != nil {
		tune(&cfg)
	}
	m := NewManager(cfg)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := m.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		e.Close()
	})
	return m
}

func joinRoom(t *testing.T, m *Manager, room, identity string) (*Participant, *protocol.JoinResult, *fakePeer) {
	t.Helper()
	p, res, peer := joinUnstarted(t, m, room, identity)
	p.Start()
	return p, res, peer
}

// joinUnstarted joins without starting negotiation: the participant is
// told about the room but is sent no offer (so no negotiation timeout).
func joinUnstarted(t *testing.T, m *Manager, room, identity string) (*Participant, *protocol.JoinResult, *fakePeer) {
	t.Helper()
	peer := newFakePeer()
	p, res, err := m.Join(JoinRequest{Room: room, Name: identity, Identity: identity, AutoSubscribe: true}, peer)
	if err != nil {
		t.Fatalf("%s joins %s: %v", identity, room, err)
	}
	return p, res, peer
}

func TestJoinLeaveAndEmptyRoomCloses(t *testing.T) {
	m := newTestManager(t, nil)
	a, _, aPeer := joinRoom(t, m, "r", "alice")
	b, res, _ := joinRoom(t, m, "r", "bob")
	if len(res.Participants) != 1 || res.Participants[0].ID != a.ID() {
		t.Fatalf("bob's join result lists %+v, want alice (%s)", res.Participants, a.ID())
	}
	waitNote(t, aPeer, protocol.NotifyParticipantJoined, func(p protocol.ParticipantParams) bool { return p.Participant.ID == b.ID() })
	// Every participant is offered its subscriber connection (with the data
	// channel) once started.
	waitNote(t, aPeer, protocol.MethodOffer, func(protocol.SDPParams) bool { return true })

	b.Leave()
	left := waitNote(t, aPeer, protocol.NotifyParticipantLeft, func(p protocol.ParticipantLeftParams) bool { return p.ParticipantID == b.ID() })
	if left.Reason != protocol.ReasonClientLeave {
		t.Fatalf("participantLeft reason %q, want %q", left.Reason, protocol.ReasonClientLeave)
	}
	if r := m.Room("r"); r == nil || len(r.Participants()) != 1 {
		t.Fatal("the room must stay open with alice in it")
	}
	a.Leave()
	deadline := time.Now().Add(10 * time.Second)
	for m.Room("r") != nil {
		if time.Now().After(deadline) {
			t.Fatal("the empty room did not close")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestDuplicateIdentityReplacesSession(t *testing.T) {
	m := newTestManager(t, nil)
	_, _, watcher := joinRoom(t, m, "dup", "watcher")
	first, _, firstPeer := joinRoom(t, m, "dup", "carol")
	second, _, _ := joinRoom(t, m, "dup", "carol")
	firstPeer.waitEnd(t, protocol.ReasonDuplicate)
	waitNote(t, watcher, protocol.NotifyParticipantLeft, func(p protocol.ParticipantLeftParams) bool { return p.ParticipantID == first.ID() })
	ids := map[string]bool{}
	for _, p := range m.Room("dup").Participants() {
		ids[p.ID] = true
	}
	if len(ids) != 2 || !ids[second.ID()] || ids[first.ID()] {
		t.Fatalf("room holds %v, want the watcher and carol's second session", ids)
	}
}

func TestRoomAndParticipantLimits(t *testing.T) {
	m := newTestManager(t, func(c *Config) { c.Limits = Limits{MaxRooms: 1, MaxParticipants: 2} })
	joinRoom(t, m, "one", "a")
	joinRoom(t, m, "one", "b")
	var perr *protocol.Error
	if _, _, err := m.Join(JoinRequest{Room: "one", Name: "c"}, newFakePeer()); !errors.As(err, &perr) {
		t.Fatalf("a third participant with MaxParticipants 2: %v, want a protocol error", err)
	}
	if _, _, err := m.Join(JoinRequest{Room: "two", Name: "d"}, newFakePeer()); !errors.As(err, &perr) {
		t.Fatalf("a second room with MaxRooms 1: %v, want a protocol error", err)
	}
	if n := len(m.Room("one").Participants()); n != 2 {
		t.Fatalf("refused joins left %d participants in the room, want 2", n)
	}
}

func TestUnansweredOfferEndsSession(t *testing.T) {
	m := newTestManager(t, func(c *Config) { c.NegotiationTimeout = 100 * time.Millisecond })
	_, _, watcher := joinUnstarted(t, m, "neg", "watcher") // would time out too
	silent, _, silentPeer := joinRoom(t, m, "neg", "silent")
	waitNote(t, silentPeer, protocol.MethodOffer, func(protocol.SDPParams) bool { return true })
	silentPeer.waitEnd(t, protocol.ReasonNegotiation)
	left := waitNote(t, watcher, protocol.NotifyParticipantLeft, func(p protocol.ParticipantLeftParams) bool { return p.ParticipantID == silent.ID() })
	if left.Reason != protocol.ReasonNegotiation {
		t.Fatalf("others were told %q, want %q", left.Reason, protocol.ReasonNegotiation)
	}
}

func TestShutdownEndsEverySession(t *testing.T) {
	m := newTestManager(t, nil)
	_, _, p1 := joinRoom(t, m, "a", "one")
	_, _, p2 := joinRoom(t, m, "b", "two")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := m.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	p1.waitEnd(t, protocol.ReasonServerShutdown)
	p2.waitEnd(t, protocol.ReasonServerShutdown)
	if !m.Draining() || len(m.RoomNames()) != 0 {
		t.Fatalf("after shutdown: draining %v, rooms %v", m.Draining(), m.RoomNames())
	}
	if _, _, err := m.Join(JoinRequest{Room: "a", Name: "late"}, newFakePeer()); err == nil {
		t.Fatal("a join during shutdown was accepted")
	}
}
