package server_test

import (
	"encoding/json"
	"errors"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/pion/transport/v5"
	"github.com/pion/transport/v5/stdnet"
	"github.com/pion/webrtc/v4"
	"github.com/starling-rtc/starling/client"
	"github.com/starling-rtc/starling/config"
	"github.com/starling-rtc/starling/internal/testutil"
	"github.com/starling-rtc/starling/protocol"
	"github.com/starling-rtc/starling/server"
)

func withResumeWindow(d time.Duration) func(*config.Config) {
	return func(c *config.Config) { c.Room.ResumeWindow = config.Duration(d) }
}

func autoResume(o *client.Options) { o.AutoResume = true }

// TestResumeKeepsSubscriber: a subscriber's WebSocket dies without `leave`;
// it resumes on a new socket within the window, keeps its participant id,
// its transceivers and its media, both of its connections restart ICE, and
// the publisher never sees it leave or join again.
func TestResumeKeepsSubscriber(t *testing.T) {
	parallel(t)
	srv := startServer(t, withResumeWindow(20*time.Second))
	const roomName = "resume"
	pub := join(t, srv, roomName, "pub")
	sub := join(t, srv, roomName, "sub", autoResume)
	rec := record(sub)
	media := publishFake(t, pub)
	video, audio := media.track("video"), media.track("audio")
	waitFor(t, 15*time.Second, "media at the subscriber", func() bool {
		return len(rec.payloads(video.ID)) >= 60 && len(rec.payloads(audio.ID)) >= 30
	})

	subID := sub.ParticipantID()
	firstToken := sub.ResumeToken()
	mids, received := transceiverMids(sub.Subscriber()), remoteTracks(sub.Subscriber())
	subUfrag, pubUfrag := remoteUfrag(sub.Subscriber()), remoteUfrag(sub.Publisher())

	sub.CloseSignaling() // the network drops the socket: no leave, no close frame
	ev, err := sub.WaitEvent(ctxT(t, 15*time.Second), client.EventResumed, nil)
	if err != nil {
		t.Fatalf("no resume: %v (events %v)", err, methods(sub.Events()))
	}
	if _, err := sub.WaitEvent(ctxT(t, time.Second), client.EventDisconnected, nil); err != nil {
		t.Fatalf("the client did not report the drop: %v", err)
	}
	var res protocol.JoinResult
	if err := json.Unmarshal(ev.Params, &res); err != nil {
		t.Fatal(err)
	}
	if res.Participant.ID != subID || sub.LastJoin().Participant.ID != subID {
		t.Fatalf("resumed as %s, want the same participant %s", res.Participant.ID, subID)
	}
	if res.ResumeToken == "" || res.ResumeToken == firstToken || sub.ResumeToken() != res.ResumeToken {
		t.Fatalf("resume token not rotated: first %q, result %q, client %q", firstToken, res.ResumeToken, sub.ResumeToken())
	}
	if len(res.Participants) != 1 || res.Participants[0].ID != pub.ParticipantID() || len(res.Participants[0].Tracks) != 2 {
		t.Fatalf("resume result should list the publisher and its 2 tracks: %+v", res.Participants)
	}

	// Media keeps flowing on the same transceivers, after ICE restarts.
	v0, a0 := len(rec.payloads(video.ID)), len(rec.payloads(audio.ID))
	waitFor(t, 15*time.Second, "media after the resume", func() bool {
		return len(rec.payloads(video.ID)) >= v0+60 && len(rec.payloads(audio.ID)) >= a0+30
	})
	waitFor(t, 10*time.Second, "ICE restart on both connections", func() bool {
		return remoteUfrag(sub.Subscriber()) != subUfrag && remoteUfrag(sub.Publisher()) != pubUfrag
	})
	if got := transceiverMids(sub.Subscriber()); got != mids {
		t.Fatalf("subscriber transceivers changed: %s, were %s", got, mids)
	}
	if !sameTracks(received, remoteTracks(sub.Subscriber())) || len(received) != 2 {
		t.Fatalf("received tracks changed with the resume: %v, were %v", remoteTracks(sub.Subscriber()), received)
	}
	rec.mu.Lock()
	if len(rec.got) != 2 || rec.owners[video.ID] != pub.ParticipantID() || rec.owners[audio.ID] != pub.ParticipantID() {
		t.Errorf("received tracks %v, want only %s and %s", rec.owners, video.ID, audio.ID)
	}
	rec.mu.Unlock()

	// The server kept one participant; the publisher saw nothing.
	if p := srv.Rooms().Room(roomName).Participant(subID); p == nil || p.Away() {
		t.Fatalf("participant %s missing or still away after the resume", subID)
	}
	assertNoComings(t, pub, subID, 1)

	// The first token worked once; the new one is the only valid one.
	if err := rawResume(t, srv, roomName, firstToken); err == nil || err.Code != protocol.CodeNotFound ||
		err.Message != "resume: unknown or expired resume token" {
		t.Fatalf("reusing the first token: %v, want 404", err)
	}
	if err := rawResume(t, srv, "elsewhere", sub.ResumeToken()); err == nil || err.Code != protocol.CodeNotFound {
		t.Fatalf("the token in another room: %v, want 404", err)
	}

	if err := sub.Leave(ctxT(t, 5*time.Second)); err != nil {
		t.Fatalf("leave after resume: %v", err)
	}
	if _, err := pub.WaitEvent(ctxT(t, 5*time.Second), protocol.NotifyParticipantLeft,
		leftBecause(subID, protocol.ReasonClientLeave)); err != nil {
		t.Fatalf("leave after a resume: %v", err)
	}
}

// TestResumeWindowExpires: a publisher whose socket drops and who does not
// come back stays invisible-but-present for the window, then leaves for
// good: others get participantLeft "disconnected" and lose its tracks, and
// a late resume gets 404.
func TestResumeWindowExpires(t *testing.T) {
	parallel(t)
	// Long enough that "still present while away" can be checked on a busy
	// machine before the window ends: the check waits for the server to mark
	// the participant away, then has the rest of the window.
	const window = 3 * time.Second
	srv := startServer(t, withResumeWindow(window))
	const roomName = "resume-expires"
	watcher := join(t, srv, roomName, "watcher")
	pub := join(t, srv, roomName, "pub")
	media := publishFake(t, pub)
	for _, tr := range media.published {
		if _, err := watcher.WaitEvent(ctxT(t, 10*time.Second), protocol.NotifyTrackPublished, nil); err != nil {
			t.Fatalf("track %s: %v", tr.ID, err)
		}
	}
	pubID := pub.ParticipantID()

	dropped := time.Now()
	pub.CloseSignaling()
	select {
	case <-pub.Done(): // no AutoResume: the session ends for the client
	case <-time.After(5 * time.Second):
		t.Fatal("Done not closed after the socket dropped")
	}
	waitFor(t, window, "the participant marked away within the window", func() bool {
		p := srv.Rooms().Room(roomName).Participant(pubID)
		if p == nil {
			t.Fatal("within the window the participant must still be in the room, away")
		}
		return p.Away()
	})
	assertNoComings(t, watcher, pubID, 1)

	ev, err := watcher.WaitEvent(ctxT(t, 10*time.Second), protocol.NotifyParticipantLeft, hasParam("participantId", pubID))
	if err != nil {
		t.Fatalf("no participantLeft after the window: %v", err)
	}
	elapsed := time.Since(dropped)
	var left protocol.ParticipantLeftParams
	_ = json.Unmarshal(ev.Params, &left)
	if left.Reason != protocol.ReasonDisconnected {
		t.Fatalf("participantLeft reason %q, want %q", left.Reason, protocol.ReasonDisconnected)
	}
	if elapsed < window-100*time.Millisecond {
		t.Fatalf("left %v after the drop, before the %v window ended", elapsed, window)
	}
	for _, tr := range media.published {
		if _, err := watcher.WaitEvent(ctxT(t, 5*time.Second), protocol.NotifyTrackUnpublished, hasParam("trackId", tr.ID)); err != nil {
			t.Fatalf("track %s not unpublished: %v", tr.ID, err)
		}
	}

	var perr *protocol.Error
	if err := pub.Resume(ctxT(t, 5*time.Second)); !errors.As(err, &perr) || perr.Code != protocol.CodeNotFound ||
		perr.Message != "resume: unknown or expired resume token" {
		t.Fatalf("resume after the window: %v, want 404", err)
	}
	if srv.Rooms().Room(roomName).Participant(pubID) != nil {
		t.Fatal("a failed resume brought the participant back")
	}
}

// TestResumeAfterNetworkChange (issue #4): a publisher's socket is closed
// and the UDP path it used goes dead; it resumes, restarts ICE from new
// local ports, and the subscriber keeps receiving its tracks on the same
// transceivers without ever seeing it leave.
func TestResumeAfterNetworkChange(t *testing.T) {
	parallel(t)
	srv := startServer(t, withResumeWindow(20*time.Second))
	const roomName = "resume-path"
	sub := join(t, srv, roomName, "sub")
	rec := record(sub)

	network := &cuttableNet{}
	pub := join(t, srv, roomName, "pub", autoResume, func(o *client.Options) { o.API = cuttableAPI(t, network) })
	media := publishTolerant(t, pub)
	video, audio := media.track("video"), media.track("audio")
	waitFor(t, 15*time.Second, "media at the subscriber", func() bool {
		return len(rec.payloads(video.ID)) >= 60 && len(rec.payloads(audio.ID)) >= 30
	})
	portBefore := selectedLocalPort(pub.Publisher())
	pubID := pub.ParticipantID()
	mids, received := transceiverMids(sub.Subscriber()), remoteTracks(sub.Subscriber())

	network.cutAll() // the old path is gone...
	pub.CloseSignaling()
	cut := time.Now()
	// ... so media stops until the publisher restarts ICE.
	if _, err := pub.WaitEvent(ctxT(t, 15*time.Second), client.EventResumed, nil); err != nil {
		t.Fatalf("no resume: %v (events %v)", err, methods(pub.Events()))
	}
	v0, a0 := len(rec.payloads(video.ID)), len(rec.payloads(audio.ID))
	waitFor(t, 15*time.Second, "the publisher's media after the resume", func() bool {
		return len(rec.payloads(video.ID)) >= v0+60 && len(rec.payloads(audio.ID)) >= a0+30
	})
	t.Logf("media back %v after the path died", time.Since(cut).Round(time.Millisecond))
	if portAfter := selectedLocalPort(pub.Publisher()); portAfter == portBefore || portAfter == 0 {
		t.Fatalf("publisher's local port %d after the ICE restart, was %d: want a new path", portAfter, portBefore)
	}
	if pub.ParticipantID() != pubID || pub.LastJoin().Participant.ID != pubID {
		t.Fatalf("the publisher resumed as %s, want %s", pub.LastJoin().Participant.ID, pubID)
	}
	if got := transceiverMids(sub.Subscriber()); got != mids || !sameTracks(received, remoteTracks(sub.Subscriber())) || len(received) != 2 {
		t.Fatalf("subscriber's transceivers changed: %s, were %s", got, mids)
	}
	assertNoComings(t, sub, pubID, 1)
	for _, e := range sub.Events() {
		if e.Method == protocol.NotifyTrackUnpublished {
			t.Fatalf("subscriber saw %s %s", e.Method, e.Params)
		}
	}
}

// TestResumeReplacesLiveSocket: a client may resume before the server has
// noticed its old socket is dead; the old socket is closed without `leave`
// and the participant continues on the new one.
func TestResumeReplacesLiveSocket(t *testing.T) {
	parallel(t)
	srv := startServer(t, withResumeWindow(20*time.Second))
	const roomName = "resume-live"
	watcher := join(t, srv, roomName, "watcher")
	c := join(t, srv, roomName, "c")
	id := c.ParticipantID()
	// A live session: its data channel up (on a busy machine the resume
	// below could otherwise come in the middle of the first connection's
	// setup, which this test is not about).
	waitDataChannelOn(t, "c's data channel to the server", c.Publisher())
	first := c.Done()
	if err := c.Resume(ctxT(t, 10*time.Second)); err != nil {
		t.Fatalf("resume over a live socket: %v", err)
	}
	select {
	case <-first:
		t.Fatal("a successful resume ended the session")
	default:
	}
	if c.LastJoin().Participant.ID != id {
		t.Fatalf("resumed as %s, want %s", c.LastJoin().Participant.ID, id)
	}
	// The session works on the new socket.
	if err := c.Call(ctxT(t, 5*time.Second), protocol.MethodPing, protocol.Empty{}, nil); err != nil {
		t.Fatalf("ping on the new socket: %v", err)
	}
	if err := c.SendData(ctxT(t, 10*time.Second), "still here"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the subscriber connection after the ICE restart", func() bool {
		return c.Subscriber().ConnectionState() == webrtc.PeerConnectionStateConnected
	})
	for _, e := range c.Events() {
		if e.Method == protocol.MethodLeave {
			t.Fatalf("the replaced socket got leave: %s", e.Params)
		}
	}
	// A wrong leave or rejoin would be announced before this round trip's
	// answer: the watcher's socket delivers in order, after the server's.
	if err := watcher.Call(ctxT(t, 5*time.Second), protocol.MethodPing, protocol.Empty{}, nil); err != nil {
		t.Fatal(err)
	}
	assertNoComings(t, watcher, id, 1)
	if p := srv.Rooms().Room(roomName).Participant(id); p == nil || p.Away() {
		t.Fatal("participant missing or away after resuming over a live socket")
	}
}

// assertNoComings fails if c saw participant id leave, or join more than
// joins times.
func assertNoComings(t *testing.T, c *client.Client, id string, joins int) {
	t.Helper()
	n := 0
	for _, e := range c.Events() {
		switch e.Method {
		case protocol.NotifyParticipantLeft:
			if hasParam("participantId", id)(e.Params) {
				t.Fatalf("others saw %s leave: %s", id, e.Params)
			}
		case protocol.NotifyParticipantJoined:
			var p protocol.ParticipantParams
			if json.Unmarshal(e.Params, &p) == nil && p.Participant.ID == id {
				n++
			}
		}
	}
	if n > joins {
		t.Fatalf("others saw %s join %d times, want at most %d", id, n, joins)
	}
}

func leftBecause(id, reason string) func(json.RawMessage) bool {
	return func(raw json.RawMessage) bool {
		var p protocol.ParticipantLeftParams
		return json.Unmarshal(raw, &p) == nil && p.ParticipantID == id && p.Reason == reason
	}
}

func methods(evs []client.Event) []string {
	out := make([]string, 0, len(evs))
	for _, e := range evs {
		out = append(out, e.Method)
	}
	return out
}

// remoteTracks lists the tracks received on pc's transceivers, by mid:
// after a resume they must be the very same objects (no new transceivers,
// no new OnTrack).
func remoteTracks(pc *webrtc.PeerConnection) map[string]*webrtc.TrackRemote {
	out := map[string]*webrtc.TrackRemote{}
	for _, tr := range pc.GetTransceivers() {
		if r := tr.Receiver(); r != nil && r.Track() != nil {
			out[tr.Mid()] = r.Track()
		}
	}
	return out
}

func sameTracks(a, b map[string]*webrtc.TrackRemote) bool {
	if len(a) != len(b) {
		return false
	}
	for mid, t := range a {
		if b[mid] != t {
			return false
		}
	}
	return true
}

func transceiverMids(pc *webrtc.PeerConnection) string {
	var mids []string
	for _, tr := range pc.GetTransceivers() {
		mids = append(mids, tr.Mid()+":"+tr.Kind().String())
	}
	return strings.Join(mids, ",")
}

func remoteUfrag(pc *webrtc.PeerConnection) string {
	rd := pc.CurrentRemoteDescription()
	if rd == nil {
		return ""
	}
	for _, line := range strings.Split(rd.SDP, "\n") {
		if u, ok := strings.CutPrefix(strings.TrimSpace(line), "a=ice-ufrag:"); ok {
			return u
		}
	}
	return ""
}

func selectedLocalPort(pc *webrtc.PeerConnection) uint16 {
	sctp := pc.SCTP()
	if sctp == nil {
		return 0
	}
	pair, err := sctp.Transport().ICETransport().GetSelectedCandidatePair()
	if err != nil || pair == nil {
		return 0
	}
	return pair.Local.Port
}

// rawResume sends `join {room, resume: token}` on a fresh socket and
// returns the error, nil on success.
func rawResume(t *testing.T, srv *server.Server, room, token string) *protocol.Error {
	t.Helper()
	ws, _, err := websocket.DefaultDialer.DialContext(ctxT(t, 5*time.Second), srv.SignalingURL(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	params, _ := json.Marshal(protocol.JoinParams{Room: room, Resume: token})
	if err := ws.WriteJSON(protocol.Message{JSONRPC: "2.0", ID: json.RawMessage(`1`), Method: protocol.MethodJoin, Params: params}); err != nil {
		t.Fatal(err)
	}
	_ = ws.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		var m protocol.Message
		if err := ws.ReadJSON(&m); err != nil {
			t.Fatalf("no join response: %v", err)
		}
		if m.Method == "" {
			return m.Error
		}
	}
}

// cuttableNet is the host's network, except that cutAll makes every UDP
// socket opened so far drop all it sends and receives, like a network path
// that went away; sockets opened later (by an ICE restart) work.
type cuttableNet struct {
	transport.Net
	mu    sync.Mutex
	conns []*cuttableConn
}

func (n *cuttableNet) ListenUDP(network string, laddr *net.UDPAddr) (transport.UDPConn, error) {
	c, err := n.Net.ListenUDP(network, laddr)
	if err != nil {
		return nil, err
	}
	cc := &cuttableConn{UDPConn: c}
	n.mu.Lock()
	n.conns = append(n.conns, cc)
	n.mu.Unlock()
	return cc, nil
}

func (n *cuttableNet) cutAll() {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, c := range n.conns {
		c.cut.Store(true)
	}
}

type cuttableConn struct {
	transport.UDPConn
	cut atomic.Bool
}

func (c *cuttableConn) WriteTo(b []byte, addr net.Addr) (int, error) {
	if c.cut.Load() {
		return len(b), nil // lost on the way
	}
	return c.UDPConn.WriteTo(b, addr)
}

func (c *cuttableConn) ReadFrom(b []byte) (int, net.Addr, error) {
	for {
		n, addr, err := c.UDPConn.ReadFrom(b)
		if err != nil || !c.cut.Load() {
			return n, addr, err
		}
	}
}

// cuttableAPI is client.LoopbackAPI on a cuttableNet.
func cuttableAPI(t *testing.T, n *cuttableNet) *webrtc.API {
	t.Helper()
	std, err := stdnet.NewNet()
	if err != nil {
		t.Fatal(err)
	}
	n.Net = std
	return testutil.PlainAPI(t, nil, func(se *webrtc.SettingEngine) { se.SetNet(n) })
}
