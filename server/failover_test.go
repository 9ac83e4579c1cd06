package server_test

import (
	"context"
	"encoding/json"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"
	"github.com/starling-rtc/starling/client"
	"github.com/starling-rtc/starling/internal/testutil"
	"github.com/starling-rtc/starling/protocol"
	"github.com/starling-rtc/starling/server"
)

// deadURL is a signaling URL nothing listens on (a port just released).
func deadURL(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	return "ws://" + addr + "/v1/rtc"
}

func dialURLs(t *testing.T, urls []string, room, name string, opts ...func(*client.Options)) (*client.Client, error) {
	t.Helper()
	api, err := client.LoopbackAPI()
	if err != nil {
		t.Fatal(err)
	}
	o := client.Options{Name: name, API: api, URLs: urls[1:]}
	for _, f := range opts {
		f(&o)
	}
	c, err := client.Dial(ctxT(t, 20*time.Second), urls[0], room, o)
	if err == nil {
		t.Cleanup(c.Close)
	}
	return c, err
}

// TestJoinSkipsDeadNode: given a dead node first, the client joins
// through the live one; with no live node it fails, naming each.
func TestJoinSkipsDeadNode(t *testing.T) {
	srv := startServer(t, nil)
	dead := deadURL(t)
	c, err := dialURLs(t, []string{dead, srv.SignalingURL()}, "failover-join", "a")
	if err != nil {
		t.Fatalf("join through [dead, live]: %v", err)
	}
	if c.URL() != srv.SignalingURL() {
		t.Fatalf("joined through %s, want %s", c.URL(), srv.SignalingURL())
	}
	if p := srv.Rooms().Room("failover-join").Participant(c.ParticipantID()); p == nil {
		t.Fatal("the live node does not have the participant")
	}
	// The comma-separated form of the same list.
	c2, err := client.Dial(ctxT(t, 20*time.Second), dead+","+srv.SignalingURL(), "failover-join", client.Options{Name: "b", API: mustLoopback(t)})
	if err != nil {
		t.Fatalf("join through \"dead,live\": %v", err)
	}
	t.Cleanup(c2.Close)

	dead2 := deadURL(t)
	_, err = dialURLs(t, []string{dead, dead2}, "failover-join", "c")
	if err == nil || !strings.Contains(err.Error(), dead) || !strings.Contains(err.Error(), dead2) {
		t.Fatalf("join through two dead nodes: %v, want an error naming both", err)
	}
}

func mustLoopback(t *testing.T) *webrtc.API {
	t.Helper()
	api, err := client.LoopbackAPI()
	if err != nil {
		t.Fatal(err)
	}
	return api
}

// TestFailoverRejoinsOnAnotherNode: a publisher on node A, with node B as
// its second URL, loses A (shut down). Two single nodes share nothing, so
// B refuses the resume (404): the client joins B afresh, publishes its
// tracks again on new connections and says so (EventRejoined), and a
// viewer on B receives its media.
func TestFailoverRejoinsOnAnotherNode(t *testing.T) {
	parallelUnlessRace(t) // every step awaited
	a := startServer(t, nil)
	b := startServer(t, nil)
	const roomName = "failover"
	viewer := join(t, b, roomName, "viewer")
	rec := record(viewer)
	pub, err := dialURLs(t, []string{a.SignalingURL(), b.SignalingURL()}, roomName, "pub",
		func(o *client.Options) { o.Rejoin = true })
	if err != nil {
		t.Fatal(err)
	}
	media := publishTolerant(t, pub)
	oldID := pub.ParticipantID()
	if pub.URL() != a.SignalingURL() {
		t.Fatalf("joined through %s, want the first URL", pub.URL())
	}

	shutdown(t, a)
	ev, err := pub.WaitEvent(ctxT(t, 30*time.Second), client.EventRejoined, nil)
	if err != nil {
		t.Fatalf("no rejoin: %v (events %v)", err, methods(pub.Events()))
	}
	var rj client.Rejoined
	if err := json.Unmarshal(ev.Params, &rj); err != nil {
		t.Fatal(err)
	}
	if pub.URL() != b.SignalingURL() || rj.Join.Participant.ID == oldID || pub.ParticipantID() != rj.Join.Participant.ID {
		t.Fatalf("after the rejoin: node %s, participant %s (was %s, event says %s)",
			pub.URL(), pub.ParticipantID(), oldID, rj.Join.Participant.ID)
	}
	if !strings.Contains(rj.Reason, "404") && !strings.Contains(strings.ToLower(rj.Reason), "unknown") {
		t.Errorf("rejoin reason %q does not say the resume was refused", rj.Reason)
	}
	if len(rj.Tracks) != 2 || len(pub.Published()) != 2 {
		t.Fatalf("published again: %+v (client lists %d), want 2 tracks", rj.Tracks, len(pub.Published()))
	}
	for _, tr := range rj.Tracks {
		if tr.ParticipantID != rj.Join.Participant.ID {
			t.Fatalf("track %s belongs to %s, want %s", tr.ID, tr.ParticipantID, rj.Join.Participant.ID)
		}
	}

	// The viewer on B sees the new participant's tracks and gets its media:
	// the same TrackLocals now feed the new publisher connection.
	byKind := map[string]string{}
	for _, tr := range rj.Tracks {
		byKind[tr.Kind] = tr.ID
	}
	waitFor(t, 20*time.Second, "the viewer on B receives the failed-over media", func() bool {
		return len(rec.payloads(byKind["video"])) >= 60 && len(rec.payloads(byKind["audio"])) >= 30
	})
	media.mu.Lock()
	sent := len(media.sentVideo)
	media.mu.Unlock()
	if sent == 0 {
		t.Fatal("the publisher sent nothing")
	}
	if _, err := viewer.WaitEvent(ctxT(t, 5*time.Second), protocol.NotifyParticipantJoined, func(raw json.RawMessage) bool {
		return strings.Contains(string(raw), rj.Join.Participant.ID)
	}); err != nil {
		t.Fatalf("the viewer saw no participantJoined for the rejoined publisher: %v", err)
	}
	select {
	case <-pub.Done():
		t.Fatal("the session ended after the rejoin")
	default:
	}
}

// TestFailoverWhenNodeUnreachable: the node's signaling becomes
// unreachable without a word (no leave, the socket just dies, as when a
// machine crashes): the client resumes through the next URL, is refused,
// and rejoins there.
func TestFailoverWhenNodeUnreachable(t *testing.T) {
	parallelUnlessRace(t) // every step awaited
	a := startServer(t, nil)
	b := startServer(t, nil)
	const roomName = "failover-crash"
	viewer := join(t, b, roomName, "viewer")
	rec := record(viewer)
	px := testutil.NewProxy(t, a.Addr())
	pub, err := dialURLs(t, []string{"ws://" + px.Addr() + "/v1/rtc", b.SignalingURL()}, roomName, "pub",
		func(o *client.Options) { o.Rejoin = true })
	if err != nil {
		t.Fatal(err)
	}
	publishTolerant(t, pub)
	px.Cut()
	ev, err := pub.WaitEvent(ctxT(t, 30*time.Second), client.EventRejoined, nil)
	if err != nil {
		t.Fatalf("no rejoin: %v (events %v)", err, methods(pub.Events()))
	}
	if _, err := pub.WaitEvent(ctxT(t, time.Second), client.EventDisconnected, nil); err != nil {
		t.Fatalf("the drop was not reported: %v", err)
	}
	var rj client.Rejoined
	if err := json.Unmarshal(ev.Params, &rj); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "media on B after the crash", func() bool {
		n := 0
		for _, tr := range rj.Tracks {
			if len(rec.payloads(tr.ID)) >= 30 {
				n++
			}
		}
		return n == 2
	})
}

// TestFailoverWhenNodeGoesSilent: the node stops answering without closing
// anything (a host that lost power or its network: no FIN, no RST). The
// client notices the silence (Options.ReadTimeout, longer than the server's
// 10 s ping interval) and fails over to the next node.
func TestFailoverWhenNodeGoesSilent(t *testing.T) {
	// Parallel: 15 s of waiting for the read timeout; a busy CPU only
	// lengthens it, and the test bounds it from below.
	parallelLongest(t)
	if testing.Short() {
		t.Skip("waits for a read timeout of 15 s")
	}
	a := startServer(t, nil)
	b := startServer(t, nil)
	const roomName = "failover-silent"
	viewer := join(t, b, roomName, "viewer")
	rec := record(viewer)
	px := testutil.NewProxy(t, a.Addr())
	const timeout = 15 * time.Second
	pub, err := dialURLs(t, []string{"ws://" + px.Addr() + "/v1/rtc", b.SignalingURL()}, roomName, "pub",
		func(o *client.Options) { o.Rejoin, o.ReadTimeout = true, timeout })
	if err != nil {
		t.Fatal(err)
	}
	publishTolerant(t, pub)
	px.Freeze()
	frozen := time.Now()
	ev, err := pub.WaitEvent(ctxT(t, timeout+30*time.Second), client.EventRejoined, nil)
	if err != nil {
		t.Fatalf("no failover from a silent node: %v (events %v)", err, methods(pub.Events()))
	}
	if d := time.Since(frozen); d < timeout-time.Second {
		t.Fatalf("failed over %v after the node went silent, before the read timeout (%v): a healthy socket would drop too", d, timeout)
	}
	t.Logf("failed over %v after the node went silent", time.Since(frozen).Round(time.Millisecond))
	var rj client.Rejoined
	if err := json.Unmarshal(ev.Params, &rj); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "media on B after the node went silent", func() bool {
		n := 0
		for _, tr := range rj.Tracks {
			if len(rec.payloads(tr.ID)) >= 30 {
				n++
			}
		}
		return n == 2
	})
}

// shutdown shuts a node down now (its cleanup's second Shutdown is a no-op).
func shutdown(t *testing.T, srv *server.Server) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
}
