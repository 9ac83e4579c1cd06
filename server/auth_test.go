package server_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/pion/webrtc/v4"

	"github.com/starling-rtc/starling/auth"
	"github.com/starling-rtc/starling/client"
	"github.com/starling-rtc/starling/config"
	"github.com/starling-rtc/starling/internal/testutil"
	"github.com/starling-rtc/starling/protocol"
	"github.com/starling-rtc/starling/server"
)

const (
	testAPIKey    = "APItest"
	testAPISecret = "test-secret-test-secret-test-secret!"
)

// withKeys configures the test API key, so join needs a token.
func withKeys(c *config.Config) {
	c.Keys = map[string]string{testAPIKey: testAPISecret}
}

// token signs a token for identity with grants (room etc.), valid for ttl.
func token(t testing.TB, identity string, g auth.Grants, ttl time.Duration) string {
	t.Helper()
	tok, err := auth.Issue(testAPIKey, testAPISecret, auth.Claims{RegisteredClaims: jwt.RegisteredClaims{Subject: identity}, Grants: g}, ttl)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func withToken(tok string) func(*client.Options) {
	return func(o *client.Options) { o.Token = tok }
}

// joinErr joins and expects the server to refuse with code.
func joinErr(t testing.TB, srv *server.Server, room, tok string, code int) *protocol.Error {
	t.Helper()
	api, err := client.LoopbackAPI()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, srv.SignalingURL(), room, client.Options{Name: "x", Token: tok, API: api})
	if err == nil {
		c.Close()
		t.Fatalf("join %s succeeded, want error %d", room, code)
	}
	var perr *protocol.Error
	if !errors.As(err, &perr) || perr.Code != code {
		t.Fatalf("join %s: %v, want protocol error %d", room, err, code)
	}
	if perr.Message == "" {
		t.Fatalf("join %s: error %d has no message", room, code)
	}
	return perr
}

// TestTokenJoin: with keys configured, join needs a valid token for the room.
func TestTokenJoin(t *testing.T) {
	parallel(t)
	srv := startServer(t, withKeys)
	const room = "secure"
	// Issue always sets exp in the future: sign an expired token by hand.
	expiredClaims := auth.Claims{RegisteredClaims: jwt.RegisteredClaims{Issuer: testAPIKey, Subject: "late",
		ExpiresAt: jwt.NewNumericDate(time.Now().Add(-time.Hour))}, Grants: auth.Grants{Room: room}}
	expired, err := jwt.NewWithClaims(jwt.SigningMethodHS256, expiredClaims).SignedString([]byte(testAPISecret))
	if err != nil {
		t.Fatal(err)
	}
	wrongSecret, err := auth.Issue(testAPIKey, "another-secret-another-secret-another", auth.Claims{
		RegisteredClaims: jwt.RegisteredClaims{Subject: "mallory"}, Grants: auth.Grants{Room: room}}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name  string
		token string
		code  int
	}{
		{"missing token", "", protocol.CodeUnauthorized},
		{"garbage token", "abc.def.ghi", protocol.CodeUnauthorized},
		{"expired", expired, protocol.CodeUnauthorized},
		{"wrong secret", wrongSecret, protocol.CodeUnauthorized},
		{"other room", token(t, "bob", auth.Grants{Room: "elsewhere"}, time.Hour), protocol.CodeForbidden},
		{"admin token without room", token(t, "ops", auth.Grants{Admin: true}, time.Hour), protocol.CodeForbidden},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			joinErr(t, srv, room, tc.token, tc.code)
		})
	}
	if r := srv.Rooms().Room(room); r != nil && len(r.Participants()) != 0 {
		t.Fatalf("refused joins left %d participants", len(r.Participants()))
	}

	c := join(t, srv, room, "alice", withToken(token(t, "alice", auth.Grants{Room: room}, time.Hour)))
	r := srv.Rooms().Room(room)
	if r == nil || len(r.Participants()) != 1 {
		t.Fatal("valid token did not join the room")
	}
	if p := r.Participant(c.ParticipantID()); p == nil || p.Identity() != "alice" {
		t.Fatalf("participant identity is not the token's sub")
	}
}

// TestTokenGrants: canPublish, canSubscribe and canPublishData are enforced.
func TestTokenGrants(t *testing.T) {
	parallel(t)
	srv := startServer(t, withKeys)
	const room = "grants"
	tok := func(id string, pub, sub, data bool) func(*client.Options) {
		return withToken(token(t, id, auth.Grants{Room: room, CanPublish: &pub, CanSubscribe: &sub, CanPublishData: &data}, time.Hour))
	}

	viewer := join(t, srv, room, "viewer", tok("viewer", false, true, false)) // may only watch
	deaf := join(t, srv, room, "deaf", tok("deaf", true, false, true))        // may not receive
	deafRec := record(deaf)
	viewerRec := record(viewer)

	// canPublish=false: an offer that sends a track is refused with 403.
	track, err := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2}, "mic", "s")
	if err != nil {
		t.Fatal(err)
	}
	_, err = viewer.Publish(ctxT(t, 10*time.Second), client.LocalTrack{Track: track, Source: protocol.SourceMicrophone})
	var perr *protocol.Error
	if !errors.As(err, &perr) || perr.Code != protocol.CodeForbidden {
		t.Fatalf("publish without canPublish: %v, want 403", err)
	}

	// A full participant publishes; the viewer receives it, the deaf one does not.
	pub := join(t, srv, room, "pub", tok("pub", true, true, true))
	media := publishFake(t, pub)
	video := media.track("video")
	waitFor(t, 15*time.Second, "media at the viewer", func() bool { return len(viewerRec.payloads(video.ID)) > 20 })
	if n := len(deafRec.payloads(video.ID)); n != 0 {
		t.Fatalf("participant without canSubscribe received %d packets", n)
	}
	if _, err := deaf.WaitEvent(ctxT(t, 5*time.Second), protocol.NotifyTrackPublished, nil); err != nil {
		t.Fatalf("participant without canSubscribe is not told about tracks: %v", err)
	}
	err = deaf.Call(ctxT(t, 5*time.Second), protocol.MethodSubscribe, protocol.TrackIDsParams{TrackIDs: []string{video.ID}}, nil)
	if !errors.As(err, &perr) || perr.Code != protocol.CodeForbidden {
		t.Fatalf("subscribe without canSubscribe: %v, want 403", err)
	}

	// canPublishData=false: the viewer's data messages are not relayed; deaf's are.
	got := make(chan protocol.DataMessage, 64)
	pub.OnData(func(m protocol.DataMessage) { got <- m })
	// Deaf's messages arrive once pub's data channel is open.
	syncData(t, deaf, got)
	if err := viewer.SendData(ctxT(t, 10*time.Second), "from viewer"); err != nil {
		t.Fatal(err)
	}
	if err := deaf.SendData(ctxT(t, 10*time.Second), "from deaf"); err != nil {
		t.Fatal(err)
	}
	select {
	case m := <-got:
		if m.From != deaf.ParticipantID() || m.Payload != "from deaf" {
			t.Fatalf("got %+v, want only deaf's message", m)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("data message with canPublishData never arrived")
	}
	select {
	case m := <-got:
		t.Fatalf("message relayed without canPublishData: %+v", m)
	case <-time.After(500 * time.Millisecond):
	}
}

// TestDuplicateIdentity: a second join with the same identity replaces the
// first, which gets leave "duplicate"; the room keeps one participant.
func TestDuplicateIdentity(t *testing.T) {
	parallel(t)
	srv := startServer(t, withKeys)
	const room = "dup"
	watcher := join(t, srv, room, "watcher", withToken(token(t, "watcher", auth.Grants{Room: room}, time.Hour)))
	first := join(t, srv, room, "first", withToken(token(t, "carol", auth.Grants{Room: room}, time.Hour)))
	second := join(t, srv, room, "second", withToken(token(t, "carol", auth.Grants{Room: room}, time.Hour)))

	if reason := testutil.LeaveReason(t, first, "first session"); reason != protocol.ReasonDuplicate {
		t.Fatalf("leave reason %q, want %q", reason, protocol.ReasonDuplicate)
	}
	select {
	case <-first.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("first session's socket was not closed")
	}
	if _, err := watcher.WaitEvent(ctxT(t, 10*time.Second), protocol.NotifyParticipantLeft,
		hasParam("participantId", first.ParticipantID())); err != nil {
		t.Fatalf("others not told the replaced session left: %v", err)
	}
	ps := srv.Rooms().Room(room).Participants()
	ids := map[string]bool{}
	for _, p := range ps {
		ids[p.ID] = true
	}
	if len(ps) != 2 || !ids[second.ParticipantID()] || !ids[watcher.ParticipantID()] || ids[first.ParticipantID()] {
		t.Fatalf("room has %+v, want the watcher and the second session only", ps)
	}
}

// TestOpenServerRefusesPublicBind: no keys on a non-loopback address needs --insecure-open.
func TestOpenServerRefusesPublicBind(t *testing.T) {
	parallel(t)
	cfg := config.Default()
	cfg.HTTP.Address = "0.0.0.0:0"
	cfg.RTC.UDPPort, cfg.RTC.TCPPort = 0, -1
	if _, err := server.New(cfg, nil); err == nil {
		t.Fatal("server started open on 0.0.0.0 without keys")
	}
}
