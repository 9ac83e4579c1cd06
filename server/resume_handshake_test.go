package server_test

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/starling-rtc/starling/client"
	"github.com/starling-rtc/starling/protocol"
)

// TestResumeDuringSubscriberHandshake: a client resumes while its
// subscriber connection's first DTLS handshake is still under way (a
// starved machine: the soak's publisher resumed 2 s after joining). The
// resume's ICE restart used to go out at once: pion drops the selected
// candidate pair when ICE restarts, the server's next handshake flight
// then had nowhere to go, pion failed the handshake and closed the
// connection, and the participant left ("disconnected") right after its
// resume; the data messages sent to it were lost (TestSoak under load,
// issue 17: 10 lost, "websocket: close sent", an admin mute answered 404).
// Here the viewer's network drops the server's ServerHello, so the server
// keeps resending its flight, and from the resume on it drops STUN too, so
// that a restarted ICE would find no pair. The server must keep the
// handshake alive (its flights keep coming), and once the network lets
// everything through the viewer gets every data message sent to it.
func TestResumeDuringSubscriberHandshake(t *testing.T) {
	parallel(t)
	srv := startServer(t, withResumeWindow(30*time.Second))
	a := join(t, srv, "resume-hs", "a")
	gate := &handshakeGate{}
	viewer := join(t, srv, "resume-hs", "viewer", func(o *client.Options) {
		o.LazyPublisher = true // only the subscriber connection
		o.API = gatedAPI(t, gate.drop)
	})
	in := inbox(viewer)
	before := sendN(t, a, "before the drop", 3)
	waitFor(t, 60*time.Second, "the server's ServerHello at the viewer", func() bool { return gate.hellos.Load() >= 1 })

	gate.stun.Store(true)
	viewer.CloseSignaling()
	p := srv.Rooms().Room("resume-hs").Participant(viewer.ParticipantID())
	waitFor(t, 10*time.Second, "the server to see the viewer away", func() bool { return p.Away() })
	away := sendN(t, a, "while away", 3)
	if err := viewer.Resume(ctxT(t, 30*time.Second)); err != nil {
		t.Fatalf("resume: %v", err)
	}
	n := gate.hellos.Load()
	ended := func() bool {
		for _, e := range viewer.Events() {
			if e.Method == protocol.MethodLeave {
				return true
			}
		}
		return false
	}
	// The server resends its flight a second, then two, ... apart: two
	// more since the resume show its handshake lives on.
	waitFor(t, 60*time.Second, "the server's handshake flight resent twice since the resume, or the viewer ended",
		func() bool { return gate.hellos.Load() >= n+2 || ended() })
	if ended() {
		t.Fatalf("the server ended the viewer after its resume (its subscriber connection's handshake failed): %v", methods(viewer.Events()))
	}
	gate.open()
	after := sendN(t, a, "after the resume", 3)
	in.waitAll(t, "the viewer", a.ParticipantID(), append(append(before, away...), after...))
	if ended() {
		t.Fatalf("the viewer was ended: %v", methods(viewer.Events()))
	}
}

// handshakeGate drops, until it opens, the datagrams with the server's
// ServerHello (the viewer's DTLS handshake cannot go on; the server, its
// DTLS server, resends that flight) and, once stun is set, STUN.
type handshakeGate struct {
	mu     sync.Mutex
	opened bool
	stun   atomic.Bool
	hellos atomic.Int64 // datagrams with a ServerHello dropped
}

func (g *handshakeGate) open() {
	g.mu.Lock()
	g.opened = true
	g.mu.Unlock()
}

func (g *handshakeGate) drop(b []byte) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.opened || len(b) == 0 {
		return false
	}
	if b[0] < 4 { // STUN (RFC 7983)
		return g.stun.Load()
	}
	if b[0] < 20 || b[0] > 63 { // not DTLS
		return false
	}
	for len(b) >= 14 { // record header (13 bytes), then a handshake's type
		if b[0] == 22 && b[13] == 2 { // handshake: ServerHello
			g.hellos.Add(1)
			return true
		}
		b = b[min(len(b), 13+(int(b[11])<<8|int(b[12]))):]
	}
	return false
}
