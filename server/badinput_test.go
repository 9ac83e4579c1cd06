package server_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/pion/webrtc/v4"
	"github.com/starling-rtc/starling/client"
	"github.com/starling-rtc/starling/config"
	"github.com/starling-rtc/starling/protocol"
	"github.com/starling-rtc/starling/server"
)

// rawPeer is a bare WebSocket that speaks the protocol frame by frame, for
// input the Go client would never send. Everything the server sends is kept
// in order of arrival.
type rawPeer struct {
	t      testing.TB
	ws     *websocket.Conn
	wmu    sync.Mutex
	nextID int

	mu   sync.Mutex
	cond *sync.Cond
	msgs []protocol.Message
	pos  int   // messages before pos were consumed by nextResponse
	err  error // why reading stopped; *websocket.CloseError for a close frame
	done chan struct{}

	id string                 // participant id once joined
	pc *webrtc.PeerConnection // answers the subscriber offer, when asked to
}

// dialRaw opens a socket to the signaling endpoint; the test's cleanup closes it.
func dialRaw(t testing.TB, srv *server.Server) *rawPeer {
	t.Helper()
	ws, _, err := websocket.DefaultDialer.DialContext(ctxT(t, 5*time.Second), srv.SignalingURL(), nil)
	if err != nil {
		t.Fatalf("dial %s: %v", srv.SignalingURL(), err)
	}
	p := &rawPeer{t: t, ws: ws, done: make(chan struct{})}
	p.cond = sync.NewCond(&p.mu)
	go p.readLoop()
	t.Cleanup(p.close)
	return p
}

func (p *rawPeer) readLoop() {
	defer close(p.done)
	for {
		typ, data, err := p.ws.ReadMessage()
		p.mu.Lock()
		if err != nil {
			p.err = err
			p.mu.Unlock()
			p.cond.Broadcast()
			return
		}
		var m protocol.Message
		if typ != websocket.TextMessage || json.Unmarshal(data, &m) != nil {
			// The server must only send JSON text frames: make it visible.
			m = protocol.Message{Method: "!undecodable frame: " + string(data)}
		}
		p.msgs = append(p.msgs, m)
		p.mu.Unlock()
		p.cond.Broadcast()
	}
}

// close says goodbye politely when the socket is still up, then cuts it.
func (p *rawPeer) close() {
	p.wmu.Lock()
	_ = p.ws.WriteControl(websocket.CloseMessage,
		websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
	p.wmu.Unlock()
	select {
	case <-p.done:
	case <-time.After(2 * time.Second):
	}
	_ = p.ws.Close()
	<-p.done
	if p.pc != nil {
		_ = p.pc.Close()
	}
}

// vanish drops the TCP connection without a close frame.
func (p *rawPeer) vanish() {
	_ = p.ws.Close()
	<-p.done
}

func (p *rawPeer) send(frame string) {
	p.t.Helper()
	p.write(websocket.TextMessage, []byte(frame))
}

func (p *rawPeer) write(typ int, frame []byte) {
	p.t.Helper()
	p.wmu.Lock()
	defer p.wmu.Unlock()
	_ = p.ws.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if err := p.ws.WriteMessage(typ, frame); err != nil {
		p.t.Fatalf("writing a frame: %v", err)
	}
}

// request sends a request with a fresh numeric id (params "" = none) and
// returns that id and the next response, which must be this request's.
func (p *rawPeer) request(method, params string) (json.RawMessage, protocol.Message) {
	p.t.Helper()
	p.nextID++
	id := json.RawMessage(strconv.Itoa(p.nextID))
	frame := fmt.Sprintf(`{"jsonrpc":"2.0","id":%s,"method":%q`, id, method)
	if params != "" {
		frame += `,"params":` + params
	}
	p.send(frame + "}")
	resp := p.nextResponse()
	if string(resp.ID) != string(id) {
		p.t.Fatalf("%s: the next response has id %s, want %s: %s", method, resp.ID, id, msgString(resp))
	}
	return id, resp
}

// notify sends a notification (no id).
func (p *rawPeer) notify(method, params string) {
	p.t.Helper()
	p.send(fmt.Sprintf(`{"jsonrpc":"2.0","method":%q,"params":%s}`, method, params))
}

// nextResponse consumes messages up to and including the next response.
func (p *rawPeer) nextResponse() protocol.Message {
	p.t.Helper()
	m, ok := p.tryResponse(10 * time.Second)
	if !ok {
		p.t.Fatalf("no response: %v", p.readErr())
	}
	return m
}

// tryResponse is nextResponse that reports failure (timeout, socket gone).
func (p *rawPeer) tryResponse(d time.Duration) (protocol.Message, bool) {
	i, ok := p.waitMsg(d, p.posLocked, func(m protocol.Message) bool { return m.Method == "" })
	if !ok {
		return protocol.Message{}, false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.pos = i + 1
	return p.msgs[i], true
}

func (p *rawPeer) posLocked() int { return p.pos }

// notification waits for a notification received at any time since dialling.
func (p *rawPeer) notification(d time.Duration, method string, match func(json.RawMessage) bool) (protocol.Message, bool) {
	i, ok := p.waitMsg(d, func() int { return 0 }, func(m protocol.Message) bool {
		return m.Method == method && (match == nil || match(m.Params))
	})
	if !ok {
		return protocol.Message{}, false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.msgs[i], true
}

// waitMsg finds the first message from index from() on that match accepts,
// waiting up to d; it gives up early once the socket is gone.
func (p *rawPeer) waitMsg(d time.Duration, from func() int, match func(protocol.Message) bool) (int, bool) {
	stop := time.AfterFunc(d, func() { p.mu.Lock(); p.cond.Broadcast(); p.mu.Unlock() })
	defer stop.Stop()
	deadline := time.Now().Add(d)
	p.mu.Lock()
	defer p.mu.Unlock()
	for i := from(); ; {
		for ; i < len(p.msgs); i++ {
			if match(p.msgs[i]) {
				return i, true
			}
		}
		if p.err != nil || time.Now().After(deadline) {
			return -1, false
		}
		p.cond.Wait()
	}
}

func (p *rawPeer) readErr() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.err
}

// closeCode waits for the socket to end and returns the code of the
// server's close frame (1006 when the connection just dropped).
func (p *rawPeer) closeCode(d time.Duration) (int, bool) {
	select {
	case <-p.done:
	case <-time.After(d):
		return 0, false
	}
	_ = p.ws.Close() // like a browser, drop TCP once the close handshake is done
	var ce *websocket.CloseError
	if errors.As(p.readErr(), &ce) {
		return ce.Code, true
	}
	return websocket.CloseAbnormalClosure, true
}

// ping checks the session still answers.
func (p *rawPeer) ping() error {
	p.t.Helper()
	_, resp := p.request(protocol.MethodPing, `{}`)
	if resp.Error != nil || string(resp.Result) != "{}" {
		return fmt.Errorf("ping answered %s", msgString(resp))
	}
	return nil
}

// joinRaw joins room on a bare socket. With answer, a pion peer connection
// answers the server's first subscriber offer, so the session is fully
// negotiated at the SDP level and no negotiation timeout hits it.
func joinRaw(t testing.TB, srv *server.Server, room string, answer bool) *rawPeer {
	t.Helper()
	p := dialRaw(t, srv)
	_, resp := p.request(protocol.MethodJoin, fmt.Sprintf(`{"room":%q,"name":"raw","autoSubscribe":false}`, room))
	var res protocol.JoinResult
	if resp.Error != nil || json.Unmarshal(resp.Result, &res) != nil || res.Participant.ID == "" {
		t.Fatalf("raw join of %s: %s", room, msgString(resp))
	}
	p.id = res.Participant.ID
	offer, ok := p.notification(10*time.Second, protocol.MethodOffer, nil)
	if !ok {
		t.Fatalf("no subscriber offer after join: %v", p.readErr())
	}
	if answer {
		p.answer(offer)
	}
	return p
}

// answer answers a subscriber offer and checks the server took it.
func (p *rawPeer) answer(offer protocol.Message) {
	p.t.Helper()
	var sdp protocol.SDPParams
	if err := json.Unmarshal(offer.Params, &sdp); err != nil {
		p.t.Fatal(err)
	}
	answer := p.answerSDP(sdp.SDP)
	raw, _ := json.Marshal(protocol.SDPParams{SDP: answer})
	p.notify(protocol.MethodAnswer, string(raw))
	// An answer the server refused comes back as an error before the pong.
	if err := p.ping(); err != nil {
		p.t.Fatalf("after answering the subscriber offer: %v", err)
	}
}

func (p *rawPeer) answerSDP(offer string) string {
	p.t.Helper()
	pc := p.peerConnection()
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: offer}); err != nil {
		p.t.Fatal(err)
	}
	ans, err := pc.CreateAnswer(nil)
	if err != nil {
		p.t.Fatal(err)
	}
	if err := pc.SetLocalDescription(ans); err != nil {
		p.t.Fatal(err)
	}
	return pc.LocalDescription().SDP
}

func (p *rawPeer) peerConnection() *webrtc.PeerConnection {
	p.t.Helper()
	if p.pc == nil {
		api, err := client.LoopbackAPI()
		if err != nil {
			p.t.Fatal(err)
		}
		if p.pc, err = api.NewPeerConnection(webrtc.Configuration{}); err != nil {
			p.t.Fatal(err)
		}
	}
	return p.pc
}

// rawPublisherOffer makes a real publisher offer with one audio and one video
// track (msid track ids "a1" and "v1"), as a browser would send.
func rawPublisherOffer(t testing.TB) string {
	t.Helper()
	api, err := client.LoopbackAPI()
	if err != nil {
		t.Fatal(err)
	}
	pc, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	for _, c := range []struct{ mime, id string }{{webrtc.MimeTypeOpus, "a1"}, {webrtc.MimeTypeVP8, "v1"}} {
		tr, err := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: c.mime}, c.id, "s")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := pc.AddTransceiverFromTrack(tr, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly}); err != nil {
			t.Fatal(err)
		}
	}
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	return offer.SDP
}

func msgString(m protocol.Message) string {
	b, _ := json.Marshal(m)
	return string(b)
}

func leftWith(participantID, reason string) func(json.RawMessage) bool {
	return func(raw json.RawMessage) bool {
		var p protocol.ParticipantLeftParams
		return json.Unmarshal(raw, &p) == nil && p.ParticipantID == participantID && p.Reason == reason
	}
}

// badEnv is the world every bad input runs in: a busy room (publisher and
// bystander, where the offenders join) and a sentinel room next door.
type badEnv struct {
	srv                    *server.Server
	busyPub, bystander     *client.Client
	sentinelPub, sentinel  *client.Client
	busyMedia, sentMedia   *fakeMedia
	bystanderRec, sentRec  *recorder
	busyVideo, sentinelVid string
	busyFlow, sentinelFlow *mediaFlow
}

const (
	badBusyRoom     = "busy"
	badSentinelRoom = "sentinel"
)

// assertUndisturbed checks that nobody but the offender noticed anything:
// both rooms keep their participants, media keeps flowing to the bystander
// and the sentinel, and the bystander's session still answers.
func (e *badEnv) assertUndisturbed(t *testing.T) {
	t.Helper()
	if err := e.bystander.Call(ctxT(t, 5*time.Second), protocol.MethodPing, protocol.Empty{}, nil); err != nil {
		t.Fatalf("the bystander's ping was not answered: %v", err)
	}
	for who, c := range map[string]*client.Client{
		"busy publisher": e.busyPub, "bystander": e.bystander, "sentinel publisher": e.sentinelPub, "sentinel subscriber": e.sentinel,
	} {
		select {
		case <-c.Done():
			t.Fatalf("the %s's socket closed; its last events: %s", who, lastEvents(c, 4))
		default:
		}
		for _, ev := range c.Events() {
			switch ev.Method {
			case protocol.MethodLeave, "error", protocol.NotifyTrackUnpublished:
				t.Fatalf("the %s got %s %s", who, ev.Method, ev.Params)
			}
		}
	}
	ids := func(room string) map[string]bool {
		out := map[string]bool{}
		if r := e.srv.Rooms().Room(room); r != nil {
			for _, p := range r.Participants() {
				out[p.ID] = true
			}
		}
		return out
	}
	if busy := ids(badBusyRoom); !busy[e.busyPub.ParticipantID()] || !busy[e.bystander.ParticipantID()] {
		t.Fatalf("room %s lost its publisher or bystander: %v", badBusyRoom, busy)
	}
	if sent := ids(badSentinelRoom); len(sent) != 2 || !sent[e.sentinelPub.ParticipantID()] || !sent[e.sentinel.ParticipantID()] {
		t.Fatalf("room %s changed: %v", badSentinelRoom, sent)
	}
	e.busyFlow.assertFlowing(t, 10)
	e.sentinelFlow.assertFlowing(t, 10)
}

// mediaFlow watches one subscriber receive one publisher's audio and video.
type mediaFlow struct {
	who          string
	c            *client.Client
	rec          *recorder
	m            *fakeMedia
	audio, video string // track ids
}

func newMediaFlow(who string, c *client.Client, rec *recorder, m *fakeMedia) *mediaFlow {
	return &mediaFlow{who: who, c: c, rec: rec, m: m, audio: m.track("audio").ID, video: m.track("video").ID}
}

// flowSlack is how many packets more than asked for the publisher may
// send before missing ones count as stopped: 2 s of audio, 2 s of video.
const flowSlackAudio, flowSlackVideo = 100, 180

// assertFlowing waits for n more packets of each track than it had when
// called (the cases of TestBadInput call it side by side). It fails once
// the publisher has sent 2 s of media more than that and they did not
// come: measured in what the publisher sent, not in wall time, since on a
// busy machine the publisher's own ticker ran late too (a 5 s window saw
// 5 audio packets, the publisher having sent hardly more). 60 s at most.
// Video the server has paused for bandwidth (it says so with
// subscriptionUpdated) is excused: that is the allocator's call on a
// loaded machine, which robustness_test.go covers; audio is never paused,
// so it must always flow.
func (f *mediaFlow) assertFlowing(t *testing.T, n int) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	audio0, video0 := len(f.rec.payloads(f.audio)), len(f.rec.payloads(f.video))
	sentAudio0, sentVideo0 := f.sent()
	for {
		audio, video := len(f.rec.payloads(f.audio)), len(f.rec.payloads(f.video))
		layer := f.videoLayer()
		videoOK := video >= video0+n || strings.Contains(layer, `"layer":"paused","reason":"bandwidth"`)
		if audio >= audio0+n && videoOK {
			return
		}
		sentAudio, sentVideo := f.sent()
		sentAudio, sentVideo = sentAudio-sentAudio0, sentVideo-sentVideo0
		if (audio < audio0+n && sentAudio >= n+flowSlackAudio) || (!videoOK && sentVideo >= n+flowSlackVideo) || time.Now().After(deadline) {
			t.Fatalf("media to the %s stopped: the publisher sent %d audio and %d video packets, it got %d and %d, want %d of each (the server says it gets video %s)",
				f.who, sentAudio, sentVideo, audio-audio0, video-video0, n, layer)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// sent is how many audio and video packets the publisher has sent.
func (f *mediaFlow) sent() (audio, video int) {
	f.m.mu.Lock()
	defer f.m.mu.Unlock()
	return len(f.m.sentAudio), len(f.m.sentVideo)
}

// videoLayer is the last subscriptionUpdated for the video track.
func (f *mediaFlow) videoLayer() string {
	last := "(no subscriptionUpdated)"
	for _, ev := range f.c.Events() {
		if ev.Method == protocol.NotifySubscriptionUpdated && hasParam("trackId", f.video)(ev.Params) {
			last = string(ev.Params)
		}
	}
	return last
}

// badOutcome is what one bad input led to.
type badOutcome struct {
	reply   *protocol.Message // the error response the offender got
	sentID  json.RawMessage   // the id it sent; nil when none could be read
	peer    *rawPeer          // the offender
	witness *rawPeer          // who must see the offender leave; nil = the bystander
}

// TestBadInput feeds the server every kind of bad input PROTOCOL.md names and
// checks each gets its error code with a message saying what was wrong, while
// the rest of the node carries on undisturbed.
func TestBadInput(t *testing.T) {
	parallelLong(t)
	// Short, for the case that waits it out, but not 2 s: with cases side
	// by side on a busy machine, an offender that does answer its
	// subscriber offer was once sent away at 2 s before its bad request.
	const negotiationTimeout = 5 * time.Second
	srv := startServer(t, func(c *config.Config) {
		c.Room.NegotiationTimeout = config.Duration(negotiationTimeout)
	})
	e := &badEnv{srv: srv}
	e.sentinel = join(t, srv, badSentinelRoom, "sentinel-sub")
	e.sentRec = record(e.sentinel)
	e.sentinelPub = join(t, srv, badSentinelRoom, "sentinel-pub")
	e.sentMedia = publishFake(t, e.sentinelPub)
	e.bystander = join(t, srv, badBusyRoom, "bystander")
	e.bystanderRec = record(e.bystander)
	e.busyPub = join(t, srv, badBusyRoom, "busy-pub")
	e.busyMedia = publishFake(t, e.busyPub)
	e.busyVideo, e.sentinelVid = e.busyMedia.track("video").ID, e.sentMedia.track("video").ID
	e.busyFlow = newMediaFlow("bystander", e.bystander, e.bystanderRec, e.busyMedia)
	e.sentinelFlow = newMediaFlow("sentinel subscriber", e.sentinel, e.sentRec, e.sentMedia)
	waitFor(t, 15*time.Second, "media in both rooms", func() bool {
		return len(e.bystanderRec.payloads(e.busyVideo)) > 0 && len(e.sentRec.payloads(e.sentinelVid)) > 0
	})
	e.busyFlow.assertFlowing(t, 30)
	e.sentinelFlow.assertFlowing(t, 30)

	// A request on a fresh socket, before join.
	pre := func(method, params string) func(*testing.T, *badEnv) badOutcome {
		return func(t *testing.T, e *badEnv) badOutcome {
			p := dialRaw(t, e.srv)
			id, resp := p.request(method, params)
			return badOutcome{reply: &resp, sentID: id, peer: p}
		}
	}
	// A request from a participant joined in the busy room.
	joined := func(method, params string) func(*testing.T, *badEnv) badOutcome {
		return func(t *testing.T, e *badEnv) badOutcome {
			p := joinRaw(t, e.srv, badBusyRoom, true)
			id, resp := p.request(method, params)
			return badOutcome{reply: &resp, sentID: id, peer: p}
		}
	}
	// A bad frame whose error response has "id": null.
	frame := func(joinFirst bool, send func(p *rawPeer)) func(*testing.T, *badEnv) badOutcome {
		return func(t *testing.T, e *badEnv) badOutcome {
			var p *rawPeer
			if joinFirst {
				p = joinRaw(t, e.srv, badBusyRoom, true)
			} else {
				p = dialRaw(t, e.srv)
			}
			send(p)
			resp := p.nextResponse()
			return badOutcome{reply: &resp, peer: p}
		}
	}
	text := func(s string) func(*rawPeer) { return func(p *rawPeer) { p.send(s) } }
	const unknown = "TR_doesNotExist"
	track := func(format string) string { return fmt.Sprintf(format, e.busyVideo) }

	cases := []badCase{
		{name: "malformed JSON", do: frame(false, text(`{"jsonrpc":"2.0","id":1,"method":"ping"`)),
			code: protocol.CodeParseError, msg: "not valid JSON"},
		{name: "malformed JSON after join", do: frame(true, text(`{"jsonrpc":"2.0","id":7,method:ping}`)),
			code: protocol.CodeParseError, msg: "not valid JSON"},
		{name: "unknown method before join", do: pre("frobnicate", `{}`),
			code: protocol.CodeMethodNotFound, msg: `unknown method "frobnicate"`},
		{name: "unknown method after join", do: joined("frobnicate", `{}`),
			code: protocol.CodeMethodNotFound, msg: `unknown method "frobnicate"`},
		{name: "binary frame", do: frame(false, func(p *rawPeer) { p.write(websocket.BinaryMessage, []byte(`{"jsonrpc":"2.0","id":1,"method":"ping"}`)) }),
			code: protocol.CodeInvalidRequest, msg: "binary frames are not supported"},
		{name: "binary frame after join", do: frame(true, func(p *rawPeer) { p.write(websocket.BinaryMessage, []byte{0, 1, 2, 3}) }),
			code: protocol.CodeInvalidRequest, msg: "binary frames are not supported"},

		{name: "join without params", do: pre("join", ""),
			code: protocol.CodeInvalidParams, msg: `"room" is required`},
		{name: "join with a number for room", do: pre("join", `{"room":42}`),
			code: protocol.CodeInvalidParams, msg: `field "room" must be a string`},
		{name: "join with a string for autoSubscribe", do: pre("join", `{"room":"busy","autoSubscribe":"yes"}`),
			code: protocol.CodeInvalidParams, msg: `field "autoSubscribe" must be a boolean`},
		{name: "offer without params", do: joined("offer", ""),
			code: protocol.CodeInvalidParams, msg: `"sdp" is required`},
		{name: "offer with a number for sdp", do: joined("offer", `{"sdp":7}`),
			code: protocol.CodeInvalidParams, msg: `field "sdp" must be a string`},
		{name: "offer with an object for tracks", do: joined("offer", `{"sdp":"v=0","tracks":{"trackId":"a"}}`),
			code: protocol.CodeInvalidParams, msg: `field "tracks" must be an array of objects`},
		{name: "offer with unparsable sdp", do: joined("offer", `{"sdp":"this is not SDP","tracks":[]}`),
			code: protocol.CodeInvalidParams, msg: "sdp does not parse"},
		{name: "subscribe without params", do: joined("subscribe", `{}`),
			code: protocol.CodeInvalidParams, msg: `"trackIds" must list at least one track id`},
		{name: "subscribe with a string for trackIds", do: joined("subscribe", `{"trackIds":"TR_x"}`),
			code: protocol.CodeInvalidParams, msg: `field "trackIds" must be an array of strings`},
		{name: "setSubscription without params", do: joined("setSubscription", ""),
			code: protocol.CodeInvalidParams, msg: `"trackId" is required`},
		{name: "setSubscription with a string for maxWidth", do: joined("setSubscription", track(`{"trackId":%q,"maxWidth":"wide"}`)),
			code: protocol.CodeInvalidParams, msg: `field "maxWidth" must be an integer`},
		{name: "setSubscription with an unknown quality", do: joined("setSubscription", track(`{"trackId":%q,"quality":"ultra"}`)),
			code: protocol.CodeInvalidParams, msg: `quality must be "low", "medium" or "high"`},
		{name: "mute without params", do: joined("mute", ""),
			code: protocol.CodeInvalidParams, msg: `"trackId" is required`},
		{name: "mute without muted", do: joined("mute", track(`{"trackId":%q}`)),
			code: protocol.CodeInvalidParams, msg: `"muted" is required`},
		{name: "mute with a string for muted", do: joined("mute", track(`{"trackId":%q,"muted":"yes"}`)),
			code: protocol.CodeInvalidParams, msg: `field "muted" must be a boolean`},

		{name: "offer before join", do: pre("offer", `{"sdp":"v=0"}`),
			code: protocol.CodeConflict, msg: "offer: join first"},
		{name: "subscribe before join", do: pre("subscribe", `{"trackIds":["TR_x"]}`),
			code: protocol.CodeConflict, msg: "subscribe: join first"},
		{name: "leave before join", do: pre("leave", `{}`),
			code: protocol.CodeConflict, msg: "leave: join first"},
		{name: "answer before join", do: frame(false, func(p *rawPeer) { p.notify("answer", `{"sdp":"v=0"}`) }),
			code: protocol.CodeConflict, msg: "answer: join first"},
		{name: "candidate before join", do: frame(false, func(p *rawPeer) { p.notify("candidate", `{"target":"publisher","candidate":null}`) }),
			code: protocol.CodeConflict, msg: "candidate: join first"},
		{name: "second join on the same socket", do: joined("join", `{"room":"busy"}`),
			code: protocol.CodeConflict, msg: "already joined"},
		{name: "second join into another room", do: joined("join", `{"room":"elsewhere"}`),
			code: protocol.CodeConflict, msg: "already joined"},
		{name: "answer with no offer pending", do: frame(true, func(p *rawPeer) {
			p.notify(protocol.MethodAnswer, string(jsonOf(protocol.SDPParams{SDP: p.pc.LocalDescription().SDP})))
		}), code: protocol.CodeConflict, msg: "no subscriber offer is pending"},

		{name: "subscribe to an unknown track", do: joined("subscribe", `{"trackIds":["`+unknown+`"]}`),
			code: protocol.CodeNotFound, msg: `unknown track "` + unknown + `"`},
		{name: "subscribe to a known and an unknown track", do: joined("subscribe", track(`{"trackIds":[%q,"`+unknown+`"]}`)),
			code: protocol.CodeNotFound, msg: `unknown track "` + unknown + `"`},
		{name: "unsubscribe from an unknown track", do: joined("unsubscribe", `{"trackIds":["`+unknown+`"]}`),
			code: protocol.CodeNotFound, msg: `unknown track "` + unknown + `"`},
		{name: "setSubscription of an unknown track", do: joined("setSubscription", `{"trackId":"`+unknown+`","paused":true}`),
			code: protocol.CodeNotFound, msg: `unknown track "` + unknown + `"`},
		{name: "mute an unknown track", do: joined("mute", `{"trackId":"`+unknown+`","muted":true}`),
			code: protocol.CodeNotFound, msg: `unknown track "` + unknown + `"`},
		{name: "mute someone else's track", do: joined("mute", track(`{"trackId":%q,"muted":true}`)),
			code: protocol.CodeForbidden, msg: "not one you publish"},
		{name: "unpublish an unknown track", do: joined("unpublish", `{"trackId":"`+unknown+`"}`),
			code: protocol.CodeNotFound, msg: `unknown track "` + unknown + `"`},
		{name: "unpublish someone else's track", do: joined("unpublish", track(`{"trackId":%q}`)),
			code: protocol.CodeForbidden, msg: "not one you publish"},

		{name: "frame over 1 MiB", do: func(t *testing.T, e *badEnv) badOutcome {
			p := joinRaw(t, e.srv, badBusyRoom, true)
			pad := strings.Repeat("x", 1<<20+1024)
			p.wmu.Lock()
			_ = p.ws.SetWriteDeadline(time.Now().Add(10 * time.Second))
			// The server may stop reading mid-frame: a failed write is fine.
			_ = p.ws.WriteMessage(websocket.TextMessage, []byte(`{"jsonrpc":"2.0","id":1,"method":"ping","params":{"pad":"`+pad+`"}}`))
			p.wmu.Unlock()
			return badOutcome{peer: p}
		}, closeCode: websocket.CloseMessageTooBig, othersSee: protocol.ReasonDisconnected},

		{name: "subscriber offer never answered", do: func(t *testing.T, e *badEnv) badOutcome {
			start := time.Now()
			p := joinRaw(t, e.srv, badBusyRoom, false)
			if _, ok := p.notification(negotiationTimeout+5*time.Second, protocol.MethodLeave, nil); !ok {
				t.Fatalf("no leave within %v of join: %v", negotiationTimeout+5*time.Second, p.readErr())
			}
			if d := time.Since(start); d < negotiationTimeout-100*time.Millisecond {
				t.Fatalf("ended after %v, before the negotiation timeout of %v", d, negotiationTimeout)
			}
			return badOutcome{peer: p}
		}, closeCode: websocket.CloseNormalClosure, leave: protocol.ReasonNegotiation, othersSee: protocol.ReasonNegotiation},

		{name: "vanishes before the join reply", do: func(t *testing.T, e *badEnv) badOutcome {
			w := joinRaw(t, e.srv, "ghost-1", true)
			p := dialRaw(t, e.srv)
			p.send(`{"jsonrpc":"2.0","id":1,"method":"join","params":{"room":"ghost-1"}}`)
			p.vanish()
			joinedEv, ok := w.notification(10*time.Second, protocol.NotifyParticipantJoined, nil)
			if !ok {
				t.Fatal("the witness never saw the vanishing client join")
			}
			var pp protocol.ParticipantParams
			_ = json.Unmarshal(joinedEv.Params, &pp)
			p.id = pp.Participant.ID
			return badOutcome{peer: p, witness: w}
		}, othersSee: protocol.ReasonDisconnected},
		{name: "vanishes right after join", do: func(t *testing.T, e *badEnv) badOutcome {
			w := joinRaw(t, e.srv, "ghost-2", true)
			p := dialRaw(t, e.srv)
			_, resp := p.request(protocol.MethodJoin, `{"room":"ghost-2"}`)
			var res protocol.JoinResult
			if resp.Error != nil || json.Unmarshal(resp.Result, &res) != nil {
				t.Fatalf("join: %s", msgString(resp))
			}
			p.id = res.Participant.ID
			p.vanish() // the subscriber offer is on its way
			return badOutcome{peer: p, witness: w}
		}, othersSee: protocol.ReasonDisconnected},
		{name: "vanishes right after sending an offer", do: func(t *testing.T, e *badEnv) badOutcome {
			w := joinRaw(t, e.srv, "ghost-3", true)
			p := joinRaw(t, e.srv, "ghost-3", false)
			params, _ := json.Marshal(protocol.OfferParams{SDP: rawPublisherOffer(t), Tracks: []protocol.TrackAnnouncement{
				{TrackID: "a1", Source: protocol.SourceMicrophone}, {TrackID: "v1", Source: protocol.SourceCamera}}})
			p.send(`{"jsonrpc":"2.0","id":99,"method":"offer","params":` + string(params) + `}`)
			p.vanish()
			return badOutcome{peer: p, witness: w}
		}, othersSee: protocol.ReasonDisconnected},
	}

	// The cases run side by side, a few at a time (each one's offender
	// and witness are its own; the rooms and their media are shared, and
	// each case checks them undisturbed): one after the other, they were
	// one of the package's longest tests.
	// Not t.Parallel: a parallel subtest waits for one of go test's
	// -parallel places, which the package's other tests hold while they
	// wait in the scheduler (sched_test.go) for this test to end: under
	// -race on two cores that deadlocked. t.Run from several goroutines
	// needs no such place.
	slots := make(chan struct{}, badCasesAtOnce)
	var running sync.WaitGroup
	defer running.Wait()
	for _, c := range cases {
		slots <- struct{}{}
		running.Add(1)
		go func() {
			defer running.Done()
			defer func() { <-slots }()
			t.Run(c.name, func(t *testing.T) { runBadCase(t, e, c) })
		}()
	}
}

// runBadCase runs one of TestBadInput's cases and checks its outcome.
func runBadCase(t *testing.T, e *badEnv, c badCase) {
	o := c.do(t, e)
	ends := c.othersSee != ""

	if c.code != 0 {
		if o.reply == nil || o.reply.Error == nil {
			t.Fatalf("want error %d, got no error: %+v", c.code, o.reply)
		}
		if got := o.reply.Error; got.Code != c.code || !strings.Contains(got.Message, c.msg) {
			t.Fatalf("got error %d %q, want %d with %q", got.Code, got.Message, c.code, c.msg)
		}
		wantID := "null"
		if o.sentID != nil {
			wantID = string(o.sentID)
		}
		if string(o.reply.ID) != wantID {
			t.Fatalf("error response has id %s, want %s", o.reply.ID, wantID)
		}
		if len(o.reply.Result) != 0 {
			t.Fatalf("error response also has a result: %s", o.reply.Result)
		}
	}
	if c.leave != "" {
		if _, ok := o.peer.notification(10*time.Second, protocol.MethodLeave, hasParam("reason", c.leave)); !ok {
			t.Fatalf("no leave with reason %q", c.leave)
		}
	}
	if c.closeCode != 0 {
		code, ok := o.peer.closeCode(10 * time.Second)
		if !ok {
			t.Fatal("the socket stayed open")
		}
		if code != c.closeCode {
			t.Fatalf("socket closed with %d, want %d (%v)", code, c.closeCode, o.peer.readErr())
		}
	}
	if !ends {
		// A bad request never ends the session.
		if err := o.peer.ping(); err != nil {
			t.Fatalf("the session did not continue: %v", err)
		}
		if o.peer.id != "" && !roomHas(e.srv, badBusyRoom, o.peer.id) {
			t.Fatalf("the offender is no longer in room %s", badBusyRoom)
		}
	}
	if ends {
		if o.peer.id == "" {
			t.Fatal("the test lost the offender's participant id")
		}
		if o.witness == nil {
			if _, err := e.bystander.WaitEvent(ctxT(t, 10*time.Second), protocol.NotifyParticipantLeft, leftWith(o.peer.id, c.othersSee)); err != nil {
				t.Fatalf("the bystander was not told the offender left (%s): %v", c.othersSee, err)
			}
			waitFor(t, 5*time.Second, "the offender gone from the room", func() bool { return !roomHas(e.srv, badBusyRoom, o.peer.id) })
		} else {
			if _, ok := o.witness.notification(10*time.Second, protocol.NotifyParticipantLeft, leftWith(o.peer.id, c.othersSee)); !ok {
				t.Fatalf("the witness was not told the offender left (%s)", c.othersSee)
			}
			roomName := roomWith(e.srv, o.witness.id)
			if ps := e.srv.Rooms().Room(roomName).Participants(); len(ps) != 1 || ps[0].ID != o.witness.id {
				t.Fatalf("room %s should hold only the witness, has %+v", roomName, ps)
			}
			// The witness leaves: the room is empty and closes.
			if _, resp := o.witness.request(protocol.MethodLeave, `{}`); resp.Error != nil {
				t.Fatalf("witness leave: %s", msgString(resp))
			}
			waitFor(t, 5*time.Second, "room "+roomName+" to close once empty", func() bool { return e.srv.Rooms().Room(roomName) == nil })
		}
	}
	e.assertUndisturbed(t)
}

// badCase is one of TestBadInput's offences and what must follow it.
type badCase struct {
	name string
	do   func(t *testing.T, e *badEnv) badOutcome
	// What the offender sees: an error response (code, message
	// substring; its id echoes the request's, or is null when there
	// was none to read), or the end of its session.
	code      int
	msg       string
	closeCode int    // the socket closes with this code (the session ends)
	leave     string // the server's `leave` reason before it closes
	othersSee string // participantLeft reason the others get (the session ends)
}

// badCasesAtOnce is how many of TestBadInput's cases run at once.
const badCasesAtOnce = 4

func roomHas(srv *server.Server, room, participantID string) bool {
	r := srv.Rooms().Room(room)
	if r == nil {
		return false
	}
	for _, p := range r.Participants() {
		if p.ID == participantID {
			return true
		}
	}
	return false
}

// roomOf finds the open room a participant is in.
func roomWith(srv *server.Server, participantID string) string {
	for _, name := range srv.Rooms().RoomNames() {
		if roomHas(srv, name, participantID) {
			return name
		}
	}
	return ""
}

func jsonOf(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}
