package server_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"
	"github.com/starling-rtc/starling/client"
	"github.com/starling-rtc/starling/config"
	"github.com/starling-rtc/starling/internal/leakcheck"
	"github.com/starling-rtc/starling/internal/testutil"
	"github.com/starling-rtc/starling/protocol"
)

func TestMain(m *testing.M) {
	setDefaultParallel()
	leakcheck.Main(closingIdle{m})
}

// closingIdle runs the tests, then closes the keep-alive connections the
// tests' HTTP requests left in http.DefaultTransport's pool: their
// goroutines are the standard library's, not leaks. Everything else
// blocked on the network (a reader nobody closed) is reported.
type closingIdle struct{ m *testing.M }

func (c closingIdle) Run() int {
	code := c.m.Run()
	http.DefaultClient.CloseIdleConnections()
	return code
}

// hasParam matches an event whose params hold value at key.
var hasParam = testutil.HasParam

// TestCallEndToEnd: one publisher with audio and video, three subscribers,
// a late joiner, the publisher leaving, and the room closing.
func TestCallEndToEnd(t *testing.T) {
	parallel(t)
	// This test checks forwarding byte for byte; bandwidth allocation has its
	// own tests, and on a loaded CI machine it may legitimately pause video.
	srv := startServer(t, func(c *config.Config) { c.RTC.CongestionControl = false })
	const roomName = "e2e"

	subs := make([]*client.Client, 3)
	recs := make([]*recorder, 3)
	for i := range subs {
		subs[i] = join(t, srv, roomName, "sub")
		recs[i] = record(subs[i])
	}
	pub := join(t, srv, roomName, "pub")
	media := publishFake(t, pub)
	video, audio := media.track("video"), media.track("audio")
	if video.ID == "" || audio.ID == "" || video.CID != "cam" || audio.CID != "mic" {
		t.Fatalf("offer result tracks wrong: %+v", media.published)
	}

	for i, s := range subs {
		if _, err := s.WaitEvent(ctxT(t, 10*time.Second), protocol.NotifyTrackPublished, nil); err != nil {
			t.Fatalf("subscriber %d: %v", i, err)
		}
	}
	// Every subscriber gets both tracks, 1.5 s of media each.
	for i, r := range recs {
		waitFor(t, 15*time.Second, "media at every subscriber", func() bool {
			return len(r.payloads(video.ID)) >= 100 && len(r.payloads(audio.ID)) >= 60
		})
		r.mu.Lock()
		owner := r.owners[video.ID]
		r.mu.Unlock()
		if owner != pub.ParticipantID() {
			t.Fatalf("subscriber %d: video msid stream %q, want publisher %q", i, owner, pub.ParticipantID())
		}
	}

	// A late joiner makes the publisher get a keyframe request, then media.
	plisBefore := media.plis.Load()
	joinedAt := time.Now()
	late := join(t, srv, roomName, "late")
	lateRec := record(late)
	waitFor(t, 10*time.Second, "keyframe request after late join", func() bool {
		return media.plis.Load() > plisBefore && media.lastPLI.Load() > joinedAt.UnixNano()
	})
	waitFor(t, 10*time.Second, "media at the late joiner", func() bool {
		return len(lateRec.payloads(video.ID)) >= 30 && len(lateRec.payloads(audio.ID)) >= 20
	})
	if first := lateRec.payloads(video.ID)[0]; first[0]&0x10 == 0 || first[4]&0x01 != 0 {
		t.Fatalf("late joiner's first video packet is not the start of a keyframe: % x", first[:12])
	}

	media.Stop()
	media.mu.Lock()
	sentVideo, sentAudio := media.sentVideo, media.sentAudio
	media.mu.Unlock()
	for _, r := range append(recs, lateRec) {
		waitLastPayload(t, "subscriber video", sentVideo, func() [][]byte { return r.payloads(video.ID) })
		waitLastPayload(t, "subscriber audio", sentAudio, func() [][]byte { return r.payloads(audio.ID) })
		assertRun(t, "subscriber video", sentVideo, r.payloads(video.ID))
		assertRun(t, "subscriber audio", sentAudio, r.payloads(audio.ID))
	}

	// The publisher leaves: everyone is told and loses the transceivers.
	pubID := pub.ParticipantID()
	if err := pub.Leave(ctxT(t, 5*time.Second)); err != nil {
		t.Fatalf("leave: %v", err)
	}
	for i, s := range append(subs, late) {
		ctx := ctxT(t, 10*time.Second)
		for _, id := range []string{video.ID, audio.ID} {
			if _, err := s.WaitEvent(ctx, protocol.NotifyTrackUnpublished, hasParam("trackId", id)); err != nil {
				t.Fatalf("subscriber %d: %v", i, err)
			}
		}
		if _, err := s.WaitEvent(ctx, protocol.NotifyParticipantLeft, hasParam("participantId", pubID)); err != nil {
			t.Fatalf("subscriber %d: %v", i, err)
		}
		waitFor(t, 10*time.Second, "renegotiation removing the publisher's tracks", func() bool {
			rd := s.Subscriber().CurrentRemoteDescription()
			return rd != nil && !strings.Contains(rd.SDP, "msid:"+pubID)
		})
	}

	// Everyone leaves: the room closes.
	for _, s := range append(subs, late) {
		if err := s.Leave(ctxT(t, 5*time.Second)); err != nil {
			t.Fatalf("leave: %v", err)
		}
	}
	waitFor(t, 5*time.Second, "room closed after the last participant left", func() bool {
		return srv.Rooms().Room(roomName) == nil
	})
}

// TestRoomsAreIsolated: two rooms at once never see each other.
func TestRoomsAreIsolated(t *testing.T) {
	parallel(t)
	srv := startServer(t, nil)
	type side struct {
		pub, sub *client.Client
		media    *fakeMedia
		rec      *recorder
	}
	rooms := map[string]*side{"red": {}, "blue": {}}
	for name, s := range rooms {
		s.sub = join(t, srv, name, name+"-sub")
		s.rec = record(s.sub)
		s.pub = join(t, srv, name, name+"-pub")
		s.media = publishFake(t, s.pub)
	}
	for name, s := range rooms {
		vid := s.media.track("video").ID
		waitFor(t, 15*time.Second, name+" media", func() bool { return len(s.rec.payloads(vid)) > 30 })
	}
	for name, s := range rooms {
		s.rec.mu.Lock()
		for id, owner := range s.rec.owners {
			if owner != s.pub.ParticipantID() {
				t.Errorf("room %s subscriber received track %s of participant %s from another room", name, id, owner)
			}
		}
		s.rec.mu.Unlock()
		for _, e := range s.sub.Events() {
			if e.Method != protocol.NotifyParticipantJoined {
				continue
			}
			var p protocol.ParticipantParams
			_ = json.Unmarshal(e.Params, &p)
			if p.Participant.ID != s.pub.ParticipantID() {
				t.Errorf("room %s subscriber saw participant %s (%s) join", name, p.Participant.ID, p.Participant.Name)
			}
		}
		others := srv.Rooms().Room(name).Participants()
		if len(others) != 2 {
			t.Errorf("room %s has %d participants, want 2", name, len(others))
		}
	}
}

// TestDataMessages: text on the publisher channel reaches the others wrapped
// with the sender's id, and not the sender.
func TestDataMessages(t *testing.T) {
	parallel(t)
	srv := startServer(t, nil)
	a := join(t, srv, "chat", "a")
	b := join(t, srv, "chat", "b")
	got := make(chan protocol.DataMessage, 4)
	b.OnData(func(m protocol.DataMessage) { got <- m })
	echo := make(chan protocol.DataMessage, 4)
	a.OnData(func(m protocol.DataMessage) { echo <- m })
	// What b receives on is the server's data channel on b's subscriber
	// connection, which opens after that connection is up: wait for the
	// channel itself (the connection's state said nothing about it, and on a
	// busy machine the message went out before the channel was open).
	waitDataChannel(t, b)
	if err := a.SendData(ctxT(t, 10*time.Second), "hello, b"); err != nil {
		t.Fatal(err)
	}
	select {
	case m := <-got:
		if m.From != a.ParticipantID() || m.Payload != "hello, b" {
			t.Fatalf("got %+v, want from %s payload %q", m, a.ParticipantID(), "hello, b")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("data message never arrived")
	}
	select {
	case m := <-echo:
		t.Fatalf("sender got its own message back: %+v", m)
	case <-time.After(300 * time.Millisecond):
	}
}

// TestLazyPublisher: a client with LazyPublisher joins and receives media
// with its publisher connection never opened (one peer connection on each
// side instead of two); its first data message opens it, and the message
// arrives.
func TestLazyPublisher(t *testing.T) {
	parallel(t)
	srv := startServer(t, nil)
	viewer := join(t, srv, "lazy", "viewer", func(o *client.Options) { o.LazyPublisher = true })
	rec := record(viewer)
	other := join(t, srv, "lazy", "other")
	got := make(chan protocol.DataMessage, 4)
	other.OnData(func(m protocol.DataMessage) { got <- m })
	media := publishFake(t, other)
	waitFor(t, 15*time.Second, "video at the viewer", func() bool {
		return len(rec.payloads(media.track("video").ID)) > 10
	})
	if st := viewer.Publisher().ConnectionState(); st != webrtc.PeerConnectionStateNew {
		t.Fatalf("viewer's publisher connection is %s before it sent anything, want new (never opened)", st)
	}
	// The first message opens the connection (offer, answer, ICE, DTLS,
	// SCTP): a loaded run (two busy loops beside the suite) took more
	// than 10 s for it; these bound a hang, they time nothing.
	if err := viewer.SendData(ctxT(t, 30*time.Second), "from a viewer"); err != nil {
		t.Fatal(err)
	}
	select {
	case m := <-got:
		if m.From != viewer.ParticipantID() || m.Payload != "from a viewer" {
			t.Fatalf("got %+v", m)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the lazy publisher's first data message never arrived")
	}
	if st := viewer.Publisher().ConnectionState(); st != webrtc.PeerConnectionStateConnected {
		t.Fatalf("viewer's publisher connection is %s after sending, want connected", st)
	}
}
