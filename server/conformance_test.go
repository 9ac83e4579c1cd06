package server_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
	"github.com/starling-rtc/starling/client"
	"github.com/starling-rtc/starling/protocol"
)

// The protocol as an outsider reads it: raw JSON over a WebSocket, checked
// against ../shared/PROTOCOL.md and docs/PROTOCOL.md word by word (field
// names, JSON types, arrays that are never null, ids echoed as sent, error
// codes, the order the documents promise), with pion peer connections for
// the SDP but none of the Go client's code. Error cases per method are in
// badinput_test.go; this walks the success paths and the transport.

// jsonShape checks that raw is an object whose fields have the JSON types
// of spec ("string", "number", "bool", "array", "object", "null"; a "?"
// suffix makes the field optional) and returns it decoded.
func jsonShape(t *testing.T, what string, raw json.RawMessage, spec map[string]string) map[string]json.RawMessage {
	t.Helper()
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatalf("%s is not a JSON object: %s", what, raw)
	}
	for field, typ := range spec {
		optional := strings.HasSuffix(typ, "?")
		typ = strings.TrimSuffix(typ, "?")
		v, ok := m[field]
		if !ok {
			if !optional {
				t.Errorf("%s: field %q is missing: %s", what, field, raw)
			}
			continue
		}
		if got := jsonType(v); got != typ {
			t.Errorf("%s: field %q is %s (%s), want %s", what, field, got, v, typ)
		}
	}
	return m
}

func jsonType(v json.RawMessage) string {
	v = bytes.TrimSpace(v)
	if len(v) == 0 {
		return "nothing"
	}
	switch c := v[0]; {
	case c == '"':
		return "string"
	case c == '{':
		return "object"
	case c == '[':
		return "array"
	case c == 't' || c == 'f':
		return "bool"
	case c == 'n':
		return "null"
	default:
		return "number"
	}
}

var (
	participantShape = map[string]string{"id": "string", "name": "string", "metadata": "string", "joinedAt": "number", "tracks": "array"}
	trackShape       = map[string]string{"id": "string", "cid": "string?", "participantId": "string", "kind": "string", "source": "string",
		"name": "string", "muted": "bool", "codec": "string", "simulcast": "bool", "layers": "array"}
)

// rawResponse sends one frame and returns the raw text of the next response.
func rawResponse(t *testing.T, ws *websocket.Conn, frame string) map[string]json.RawMessage {
	t.Helper()
	if err := ws.WriteMessage(websocket.TextMessage, []byte(frame)); err != nil {
		t.Fatal(err)
	}
	_ = ws.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		_, data, err := ws.ReadMessage()
		if err != nil {
			t.Fatalf("no response to %s: %v", frame, err)
		}
		var m map[string]json.RawMessage
		if err := json.Unmarshal(data, &m); err != nil {
			t.Fatalf("the server sent a frame that is not a JSON object: %q", data)
		}
		if _, isNote := m["method"]; !isNote {
			return m
		}
	}
}

func dialPlain(t *testing.T, url string, compress bool) *websocket.Conn {
	t.Helper()
	d := websocket.Dialer{EnableCompression: compress, HandshakeTimeout: 5 * time.Second}
	ws, _, err := d.Dial(url, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ws.Close() })
	return ws
}

// TestConformanceTransport: JSON-RPC envelopes, ids, error objects and the
// WebSocket rules of "Transport".
func TestConformanceTransport(t *testing.T) {
	parallel(t)
	srv := startServer(t, nil)

	t.Run("ids are echoed exactly and responses carry jsonrpc 2.0", func(t *testing.T) {
		ws := dialPlain(t, srv.SignalingURL(), false)
		for _, id := range []string{`"abc"`, `7`, `-3`, `1.5`, `"Ω \u00e9"`, `0`, `1e3`, `null`} {
			resp := rawResponse(t, ws, `{"jsonrpc":"2.0","id":`+id+`,"method":"ping","params":{}}`)
			if string(resp["id"]) != id {
				t.Errorf("ping with id %s answered with id %s", id, resp["id"])
			}
			if string(resp["jsonrpc"]) != `"2.0"` {
				t.Errorf("response without jsonrpc 2.0: %v", resp)
			}
			if string(resp["result"]) != "{}" {
				t.Errorf("ping with id %s: result %s, want {}", id, resp["result"])
			}
			if _, ok := resp["error"]; ok {
				t.Errorf("a successful response has an error member: %v", resp)
			}
		}
	})

	t.Run("ping without params and with unknown fields", func(t *testing.T) {
		ws := dialPlain(t, srv.SignalingURL(), false)
		for _, frame := range []string{
			`{"jsonrpc":"2.0","id":1,"method":"ping"}`,
			`{"jsonrpc":"2.0","id":2,"method":"ping","params":{"future":[1,2]}}`,
			`{"jsonrpc":"2.0","id":3,"method":"ping","params":null}`,
		} {
			if resp := rawResponse(t, ws, frame); string(resp["result"]) != "{}" {
				t.Errorf("%s answered %v, want result {}", frame, resp)
			}
		}
	})

	t.Run("error objects", func(t *testing.T) {
		ws := dialPlain(t, srv.SignalingURL(), false)
		for _, c := range []struct {
			frame, id string
			code      int
		}{
			{`{"jsonrpc":"2.0","id":"u","method":"frobnicate","params":{}}`, `"u"`, protocol.CodeMethodNotFound},
			{`{"jsonrpc":"2.0","id":4,"method":"subscribe","params":{"trackIds":["TR_x"]}}`, `4`, protocol.CodeConflict},
			{`{"jsonrpc":"2.0","id":5,"method":"setAudioMix","params":{"enabled":true}}`, `5`, protocol.CodeConflict},
			{`{"jsonrpc":"2.0","id":6,"method":"join","params":{}}`, `6`, protocol.CodeInvalidParams},
			{`{"jsonrpc":"2.0","id":7,"method":"join","params":{"room":["x"]}}`, `7`, protocol.CodeInvalidParams},
			{`{"jsonrpc":"1.0","id":8,"method":"ping"}`, `8`, protocol.CodeInvalidRequest},
			{`{"jsonrpc":"2.0","id":9}`, `9`, protocol.CodeInvalidRequest},
			{`{"jsonrpc":"2.0","id":10,"method":"ping","params":"x"}`, `10`, protocol.CodeInvalidRequest},
			{`[{"jsonrpc":"2.0","id":11,"method":"ping"}]`, `null`, protocol.CodeInvalidRequest},
			{`{"jsonrpc":"2.0","id":12,"method":"ping"`, `null`, protocol.CodeParseError},
			{`"ping"`, `null`, protocol.CodeInvalidRequest},
		} {
			resp := rawResponse(t, ws, c.frame)
			if string(resp["id"]) != c.id {
				t.Errorf("%s: response id %s, want %s", c.frame, resp["id"], c.id)
			}
			if _, ok := resp["result"]; ok {
				t.Errorf("%s: an error response has a result member: %v", c.frame, resp)
			}
			e := jsonShape(t, c.frame+": error", resp["error"], map[string]string{"code": "number", "message": "string"})
			if string(e["code"]) != fmt.Sprint(c.code) {
				t.Errorf("%s: code %s, want %d", c.frame, e["code"], c.code)
			}
			if len(e["message"]) < 5 {
				t.Errorf("%s: the message does not say what was wrong: %s", c.frame, e["message"])
			}
		}
		// A bad request never ends the session.
		if resp := rawResponse(t, ws, `{"jsonrpc":"2.0","id":99,"method":"ping"}`); string(resp["result"]) != "{}" {
			t.Fatalf("ping after the errors: %v", resp)
		}
	})

	t.Run("the server answers a WebSocket ping", func(t *testing.T) {
		ws := dialPlain(t, srv.SignalingURL(), false)
		pong := make(chan string, 1)
		ws.SetPongHandler(func(s string) error { pong <- s; return nil })
		if err := ws.WriteControl(websocket.PingMessage, []byte("hi"), time.Now().Add(5*time.Second)); err != nil {
			t.Fatal(err)
		}
		go func() {
			_ = ws.SetReadDeadline(time.Now().Add(10 * time.Second))
			for {
				if _, _, err := ws.ReadMessage(); err != nil {
					return
				}
			}
		}()
		select {
		case s := <-pong:
			if s != "hi" {
				t.Errorf("pong carries %q, want the ping's %q", s, "hi")
			}
		case <-time.After(10 * time.Second):
			t.Fatal("no pong")
		}
	})

	// "Frames over 1 MiB close the socket with code 1009": the message the
	// peer sends, not its compressed size on the wire. A browser compresses
	// (permessage-deflate), so 2 MiB of JSON may travel as a few kB.
	for _, compress := range []bool{false, true} {
		t.Run(fmt.Sprintf("a message over 1 MiB closes with 1009 (compressed %v)", compress), func(t *testing.T) {
			ws := dialPlain(t, srv.SignalingURL(), compress)
			pad := strings.Repeat("a", 2<<20)
			if err := ws.WriteMessage(websocket.TextMessage, []byte(`{"jsonrpc":"2.0","id":1,"method":"ping","params":{"pad":"`+pad+`"}}`)); err != nil {
				t.Fatal(err)
			}
			_ = ws.SetReadDeadline(time.Now().Add(10 * time.Second))
			for {
				_, data, err := ws.ReadMessage()
				if err == nil {
					t.Errorf("the server answered a 2 MiB message instead of closing: %.200s", data)
					continue
				}
				if !websocket.IsCloseError(err, websocket.CloseMessageTooBig) {
					t.Fatalf("the socket ended with %v, want close code 1009", err)
				}
				return
			}
		})
	}
	t.Run("a message just under 1 MiB is accepted (compressed)", func(t *testing.T) {
		ws := dialPlain(t, srv.SignalingURL(), true)
		frame := `{"jsonrpc":"2.0","id":1,"method":"ping","params":{"pad":"`
		frame += strings.Repeat("a", 1<<20-len(frame)-3) + `"}}`
		if resp := rawResponse(t, ws, frame); string(resp["result"]) != "{}" {
			t.Fatalf("a %d-byte ping answered %v", len(frame), resp)
		}
	})
}

// confPeer is a raw participant: rawPeer's socket plus pion peer
// connections driven by the messages as PROTOCOL.md describes them.
type confPeer struct {
	*rawPeer
	sub, pub *webrtc.PeerConnection
	subMu    sync.Mutex // one subscriber offer answered at a time
	packets  sync.Map   // track id -> *atomic.Int64, what arrived
	streams  sync.Map   // track id -> stream id (msid's first part)
	labels   chan string
	// pubAnswered is closed once the publisher answer is applied.
	pubAnswered chan struct{}
	// ended: the test is over and closes its connections; an offer or
	// candidate still on its way then finds them closed, which is no fault.
	ended atomic.Bool
}

func newConfPeer(t *testing.T, p *rawPeer) *confPeer {
	api, err := client.LoopbackAPI()
	if err != nil {
		t.Fatal(err)
	}
	c := &confPeer{rawPeer: p, labels: make(chan string, 4), pubAnswered: make(chan struct{})}
	if c.sub, err = api.NewPeerConnection(webrtc.Configuration{}); err != nil {
		t.Fatal(err)
	}
	if c.pub, err = api.NewPeerConnection(webrtc.Configuration{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.ended.Store(true); _ = c.sub.Close(); _ = c.pub.Close() })
	c.sub.OnDataChannel(func(dc *webrtc.DataChannel) { c.labels <- dc.Label() })
	c.sub.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		c.streams.Store(tr.ID(), tr.StreamID())
		n, _ := c.packets.LoadOrStore(tr.ID(), new(atomic.Int64))
		for {
			if _, _, err := tr.ReadRTP(); err != nil {
				return
			}
			n.(*atomic.Int64).Add(1)
		}
	})
	for target, pc := range map[string]*webrtc.PeerConnection{protocol.TargetSubscriber: c.sub, protocol.TargetPublisher: c.pub} {
		target := target
		pc.OnICECandidate(func(cand *webrtc.ICECandidate) {
			var init any // null: end of candidates
			if cand != nil {
				init = cand.ToJSON()
			}
			raw, _ := json.Marshal(map[string]any{"target": target, "candidate": init})
			c.wmu.Lock()
			_ = c.ws.WriteMessage(websocket.TextMessage, []byte(`{"jsonrpc":"2.0","method":"candidate","params":`+string(raw)+`}`))
			c.wmu.Unlock()
		})
	}
	return c
}

func (c *confPeer) received(trackID string) int64 {
	n, ok := c.packets.Load(trackID)
	if !ok {
		return 0
	}
	return n.(*atomic.Int64).Load()
}

// serve answers every subscriber offer and adds every server candidate,
// checking their shapes, from the first message received on.
func (c *confPeer) serve(t *testing.T) {
	go func() {
		for i := 0; ; i++ {
			idx, ok := c.waitMsg(time.Hour, func() int { return i }, func(m protocol.Message) bool {
				return m.Method == protocol.MethodOffer || m.Method == protocol.MethodCandidate
			})
			if !ok {
				return
			}
			i = idx
			c.mu.Lock()
			m := c.msgs[idx]
			c.mu.Unlock()
			if m.Method == protocol.MethodCandidate {
				c.candidate(t, idx, m.Params)
				continue
			}
			p := jsonShape(t, "offer notification", m.Params, map[string]string{"sdp": "string"})
			var sdp string
			_ = json.Unmarshal(p["sdp"], &sdp)
			c.subMu.Lock()
			err := c.sub.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: sdp})
			var ans webrtc.SessionDescription
			if err == nil {
				ans, err = c.sub.CreateAnswer(nil)
			}
			if err == nil {
				err = c.sub.SetLocalDescription(ans)
			}
			c.subMu.Unlock()
			if err != nil {
				if !c.ended.Load() {
					t.Errorf("the subscriber offer does not apply: %v\n%s", err, sdp)
				}
				return
			}
			raw, _ := json.Marshal(protocol.SDPParams{SDP: ans.SDP})
			c.wmu.Lock()
			_ = c.ws.WriteMessage(websocket.TextMessage, []byte(`{"jsonrpc":"2.0","method":"answer","params":`+string(raw)+`}`))
			c.wmu.Unlock()
		}
	}()
}

// candidate applies a server candidate received as message idx. A
// publisher candidate must come after the `offer` result carrying the
// answer it belongs to (it is applied once the answer is).
func (c *confPeer) candidate(t *testing.T, idx int, raw json.RawMessage) {
	p := jsonShape(t, "candidate notification", raw, map[string]string{"target": "string"})
	var target string
	_ = json.Unmarshal(p["target"], &target)
	pc := map[string]*webrtc.PeerConnection{protocol.TargetSubscriber: c.sub, protocol.TargetPublisher: c.pub}[target]
	if pc == nil {
		t.Errorf("candidate for target %q", target)
		return
	}
	if jsonType(p["candidate"]) == "null" {
		return // end of candidates
	}
	cand := jsonShape(t, "candidate", p["candidate"], map[string]string{"candidate": "string", "sdpMid": "string?", "sdpMLineIndex": "number?"})
	if _, ok := cand["sdpMid"]; !ok {
		if _, ok := cand["sdpMLineIndex"]; !ok {
			t.Errorf("a candidate with neither sdpMid nor sdpMLineIndex: %s", p["candidate"])
		}
	}
	var init webrtc.ICECandidateInit
	_ = json.Unmarshal(p["candidate"], &init)
	if target == protocol.TargetPublisher {
		c.mu.Lock()
		answered := false
		for _, m := range c.msgs[:idx] {
			answered = answered || (m.Method == "" && bytes.Contains(m.Result, []byte(`"sdp"`)))
		}
		c.mu.Unlock()
		if !answered {
			t.Errorf("a publisher candidate came before the offer result with the answer: %s", raw)
			return
		}
		select {
		case <-c.pubAnswered:
		case <-time.After(15 * time.Second):
			t.Errorf("the publisher answer was never applied")
			return
		}
	}
	if target == protocol.TargetSubscriber {
		c.subMu.Lock()
		defer c.subMu.Unlock()
	}
	if err := pc.AddICECandidate(init); err != nil && !c.ended.Load() {
		t.Errorf("the server's %s candidate %s does not apply: %v", target, p["candidate"], err)
	}
}

// sendVideo writes keyframes on track until stop closes.
func sendVideo(track *webrtc.TrackLocalStaticRTP, stop <-chan struct{}) {
	tick := time.NewTicker(33 * time.Millisecond)
	defer tick.Stop()
	for frame := 0; ; frame++ {
		select {
		case <-stop:
			return
		case <-tick.C:
		}
		_ = track.WriteRTP(&rtp.Packet{Header: rtp.Header{Version: 2, Marker: true, SequenceNumber: uint16(frame), Timestamp: uint32(frame * 3000)},
			Payload: vp8Payload(uint16(frame), true, true, frame, 0)})
	}
}

func resultOf(t *testing.T, what string, m protocol.Message) json.RawMessage {
	t.Helper()
	if m.Error != nil || m.Result == nil {
		t.Fatalf("%s: %s", what, msgString(m))
	}
	return m.Result
}

func wantEmpty(t *testing.T, what string, m protocol.Message) {
	t.Helper()
	if r := resultOf(t, what, m); string(r) != "{}" {
		t.Errorf("%s: result %s, want {}", what, r)
	}
}

func notified(t *testing.T, p *rawPeer, method string, match func(json.RawMessage) bool) json.RawMessage {
	t.Helper()
	m, ok := p.notification(15*time.Second, method, match)
	if !ok {
		t.Fatalf("no %s notification: %v", method, p.readErr())
	}
	return m.Params
}

func hasField(field, value string) func(json.RawMessage) bool {
	return func(raw json.RawMessage) bool {
		var m map[string]json.RawMessage
		if json.Unmarshal(raw, &m) != nil {
			return false
		}
		v, _ := json.Marshal(value)
		return string(m[field]) == string(v)
	}
}
