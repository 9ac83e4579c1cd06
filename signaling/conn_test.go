package signaling

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/starling-rtc/starling/signaling/protocol"
)

func TestRequestResponse(t *testing.T) {
	type point struct {
		X int    `json:"x"`
		S string `json:"s"`
	}
	tests := []struct {
		name       string
		id         string // raw JSON, must come back byte for byte
		method     string
		params     string
		result     any
		err        *protocol.Error
		wantResult string
		wantCode   int
	}{
		{name: "string id", id: `"abc"`, method: "ping", wantResult: `{}`},
		{name: "empty string id", id: `""`, method: "ping", wantResult: `{}`},
		{name: "escaped string id", id: `"a<b>&\u00e9\""`, method: "ping", wantResult: `{}`},
		{name: "integer id", id: `1`, method: "ping", wantResult: `{}`},
		{name: "zero id", id: `0`, method: "ping", wantResult: `{}`},
		{name: "negative id", id: `-7`, method: "ping", wantResult: `{}`},
		{name: "exponent id", id: `1.5e3`, method: "ping", wantResult: `{}`},
		{name: "huge id", id: `123456789012345678901234567890`, method: "ping", wantResult: `{}`},
		{name: "null id", id: `null`, method: "ping", wantResult: `{}`},
		{name: "struct result", id: `2`, method: "get", result: point{X: 3, S: "<v=0>"}, wantResult: `{"x":3,"s":"<v=0>"}`},
		{name: "typed nil result", id: `3`, method: "get", result: (*point)(nil), wantResult: `{}`},
		{name: "params passed raw", id: `4`, method: "echo", params: `{"a": [1, 2]}`, wantResult: `{"a":[1,2]}`},
		{name: "error result", id: `"e"`, method: "get", err: protocol.Errorf(protocol.CodeConflict, "join first"), wantCode: protocol.CodeConflict},
		{name: "unencodable result", id: `5`, method: "get", result: func() {}, wantCode: protocol.CodeInternal},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, Options{}, func(d *fakeDispatcher) {
				d.onRequest = func(d *fakeDispatcher, method string, params json.RawMessage) (any, *protocol.Error) {
					switch method {
					case "echo":
						return params, nil
					case "get":
						return tc.result, tc.err
					}
					return nil, nil
				}
			})
			ws, d := h.dial()
			frame := `{"jsonrpc":"2.0","id":` + tc.id + `,"method":"` + tc.method + `"`
			if tc.params != "" {
				frame += `,"params":` + tc.params
			}
			send(t, ws, frame+"}")
			m := readMessage(t, ws)
			if got := m.str("id"); got != tc.id {
				t.Errorf("id = %s, want %s exactly", got, tc.id)
			}
			if tc.wantCode != 0 {
				if e := m.errorObject(t); e.Code != tc.wantCode || e.Message == "" {
					t.Errorf("error = %+v, want code %d with a message", e, tc.wantCode)
				}
				if _, ok := m["result"]; ok {
					t.Errorf("error response also has a result: %v", m)
				}
			} else if got := m.str("result"); got != tc.wantResult {
				t.Errorf("result = %s, want %s", got, tc.wantResult)
			}
			if calls := d.callLog(); len(calls) != 1 || calls[0] != "request:"+tc.method {
				t.Errorf("dispatcher calls = %v", calls)
			}
		})
	}
}

func TestNotifications(t *testing.T) {
	tests := []struct {
		name      string
		frame     string
		err       *protocol.Error
		wantCode  int // 0: no response expected
		wantParam string
	}{
		{name: "accepted", frame: `{"jsonrpc":"2.0","method":"answer","params":{"sdp":"v=0"}}`, wantParam: `{"sdp":"v=0"}`},
		{name: "no params", frame: `{"jsonrpc":"2.0","method":"candidate"}`, wantParam: ``},
		{name: "null params", frame: `{"jsonrpc":"2.0","method":"candidate","params":null}`, wantParam: `null`},
		{name: "error is answered with id null", frame: `{"jsonrpc":"2.0","method":"answer","params":{}}`,
			err: protocol.Errorf(protocol.CodeInvalidParams, "invalid params: sdp missing"), wantCode: protocol.CodeInvalidParams, wantParam: `{}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, Options{}, func(d *fakeDispatcher) {
				d.onNotification = func(*fakeDispatcher, string, json.RawMessage) *protocol.Error { return tc.err }
			})
			ws, d := h.dial()
			send(t, ws, tc.frame)
			if tc.wantCode != 0 {
				m := readMessage(t, ws)
				if m.str("id") != "null" || m.errorObject(t).Code != tc.wantCode {
					t.Fatalf("got %v, want error %d with id null", m, tc.wantCode)
				}
			}
			// The next thing on the wire is the ping's answer: a successful
			// notification produced no response.
			ping(t, ws, `"after"`)
			d.mu.Lock()
			defer d.mu.Unlock()
			if len(d.calls) != 2 || !strings.HasPrefix(d.calls[0], "notification:") || d.params[0] != tc.wantParam {
				t.Errorf("calls = %v params = %q, want a notification with params %q", d.calls, d.params, tc.wantParam)
			}
		})
	}
}

func TestDispatcherPanic(t *testing.T) {
	tests := []struct {
		name   string
		frame  string
		wantID string
	}{
		{name: "request", frame: `{"jsonrpc":"2.0","id":"p","method":"boom"}`, wantID: `"p"`},
		{name: "notification", frame: `{"jsonrpc":"2.0","method":"boom"}`, wantID: `null`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			boom := func(method string) {
				if method == "boom" {
					panic("kaboom")
				}
			}
			h := newHarness(t, Options{}, func(d *fakeDispatcher) {
				d.onRequest = func(_ *fakeDispatcher, method string, _ json.RawMessage) (any, *protocol.Error) {
					boom(method)
					return nil, nil
				}
				d.onNotification = func(_ *fakeDispatcher, method string, _ json.RawMessage) *protocol.Error {
					boom(method)
					return nil
				}
			})
			ws, _ := h.dial()
			for i := range 3 { // the connection survives repeated panics
				send(t, ws, tc.frame)
				m := readMessage(t, ws)
				if e := m.errorObject(t); m.str("id") != tc.wantID || e.Code != protocol.CodeInternal {
					t.Fatalf("round %d: got %v, want code 500 with id %s", i, m, tc.wantID)
				}
				ping(t, ws, fmt.Sprint(i))
			}
			if logs := h.logs.String(); !strings.Contains(logs, "dispatcher panic") || !strings.Contains(logs, "kaboom") {
				t.Errorf("panic not logged:\n%s", logs)
			}
		})
	}
}

func TestMaxFrame(t *testing.T) {
	const limit = 1024
	request := `{"jsonrpc":"2.0","id":1,"method":"ping"}`
	tests := []struct {
		name      string
		size      int
		wantClose bool
	}{
		{name: "at limit", size: limit},
		{name: "one byte over", size: limit + 1, wantClose: true},
		{name: "far over", size: 4 << 20, wantClose: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			// WriteTimeout also bounds how long the server drains the
			// rejected frame before cutting TCP.
			h := newHarness(t, Options{MaxFrame: limit, WriteTimeout: 300 * time.Millisecond}, nil)
			ws, d := h.dial()
			frame := request + strings.Repeat(" ", tc.size-len(request))
			// A big write can stall while the server refuses it, so the
			// client reads concurrently, as a real one would.
			writeDone := make(chan error, 1)
			go func() { writeDone <- ws.WriteMessage(websocket.TextMessage, []byte(frame)) }()
			if !tc.wantClose {
				m := readMessage(t, ws)
				if m.str("result") != "{}" {
					t.Fatalf("frame at the limit not answered: %v", m)
				}
				<-writeDone
				ping(t, ws, "2")
				return
			}
			_, ce := readClose(t, ws)
			if ce.Code != websocket.CloseMessageTooBig {
				t.Errorf("close code = %d, want 1009", ce.Code)
			}
			<-writeDone
			waitClosed(t, d, 5*time.Second)
			if calls := d.callLog(); len(calls) != 0 {
				t.Errorf("oversized frame reached the dispatcher: %v", calls)
			}
		})
	}
}

func TestKeepaliveAndReadTimeout(t *testing.T) {
	// Margins are wide (a frame every 50ms against a 500ms timeout) so a
	// loaded machine does not make a live client look silent.
	opts := Options{PingInterval: 50 * time.Millisecond, ReadTimeout: 500 * time.Millisecond}
	const observe = 1500 * time.Millisecond // three read timeouts
	tests := []struct {
		name      string
		client    func(ws *websocket.Conn, stop <-chan struct{}) // runs until stop
		wantDrop  bool
		wantPings bool
	}{
		{
			name:      "reading client answers pings",
			wantPings: true,
			client: func(ws *websocket.Conn, stop <-chan struct{}) {
				for {
					if _, _, err := ws.ReadMessage(); err != nil {
						return // gorilla answers pings while reading
					}
				}
			},
		},
		{
			name: "client that only sends frames",
			client: func(ws *websocket.Conn, stop <-chan struct{}) {
				tick := time.NewTicker(50 * time.Millisecond)
				defer tick.Stop()
				for {
					select {
					case <-stop:
						return
					case <-tick.C:
						if ws.WriteMessage(websocket.TextMessage, []byte(`{"jsonrpc":"2.0","method":"candidate"}`)) != nil {
							return
						}
					}
				}
			},
		},
		{
			name:     "silent client",
			wantDrop: true,
			client:   func(*websocket.Conn, <-chan struct{}) {},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, opts, nil)
			ws, d := h.dial()
			var wg sync.WaitGroup
			pingCount := make(chan struct{}, 1000)
			ws.SetPingHandler(func(data string) error {
				pingCount <- struct{}{}
				return ws.WriteControl(websocket.PongMessage, []byte(data), time.Now().Add(time.Second))
			})
			stop := make(chan struct{})
			wg.Add(1)
			go func() {
				defer wg.Done()
				tc.client(ws, stop)
			}()
			start := time.Now()
			wait := observe
			if tc.wantDrop {
				wait = 10 * time.Second
			}
			select {
			case <-d.closed:
				if !tc.wantDrop {
					t.Fatalf("live client dropped after %v; log:\n%s", time.Since(start), h.logs.String())
				}
				if el := time.Since(start); el < opts.ReadTimeout*3/4 {
					t.Errorf("dropped after %v, before the read timeout %v", el, opts.ReadTimeout)
				}
			case <-time.After(wait):
				if tc.wantDrop {
					t.Fatalf("silent client still connected after %v; log:\n%s", wait, h.logs.String())
				}
			}
			close(stop)
			ws.Close()
			wg.Wait()
			if tc.wantPings && len(pingCount) < 5 {
				t.Errorf("client saw %d pings in %v, want at least 5", len(pingCount), observe)
			}
		})
	}
}

// TestClosedOnce ends connections every way there is and checks that Closed
// runs once, Done closes, Notify then fails fast, and (in the harness
// cleanup) that both goroutines are gone.
func TestClosedOnce(t *testing.T) {
	tests := []struct {
		name string
		opts Options
		end  func(t *testing.T, ws *websocket.Conn, d *fakeDispatcher)
	}{
		{name: "client close frame", end: func(t *testing.T, ws *websocket.Conn, _ *fakeDispatcher) {
			_ = ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(1000, "bye"), time.Now().Add(time.Second))
		}},
		{name: "client drops TCP", end: func(t *testing.T, ws *websocket.Conn, _ *fakeDispatcher) {
			ws.NetConn().Close()
		}},
		{name: "server Close", end: func(t *testing.T, ws *websocket.Conn, d *fakeDispatcher) {
			d.conn.Close(4000, "done")
			go func() { _, _, _ = ws.ReadMessage() }() // answers the close frame
		}},
		{name: "concurrent Close, peer never answers", opts: Options{WriteTimeout: 200 * time.Millisecond}, end: func(t *testing.T, ws *websocket.Conn, d *fakeDispatcher) {
			var wg sync.WaitGroup
			for range 8 {
				wg.Go(func() { d.conn.Close(4000, "done") })
			}
			wg.Wait()
		}},
		{name: "read timeout", opts: Options{ReadTimeout: 100 * time.Millisecond}, end: func(*testing.T, *websocket.Conn, *fakeDispatcher) {}},
		{name: "oversized frame", opts: Options{MaxFrame: 64, WriteTimeout: 200 * time.Millisecond}, end: func(t *testing.T, ws *websocket.Conn, _ *fakeDispatcher) {
			send(t, ws, strings.Repeat(" ", 65))
		}},
		{name: "send queue overflow", opts: Options{SendQueue: 1}, end: func(t *testing.T, ws *websocket.Conn, d *fakeDispatcher) {
			big := strings.Repeat("x", 1<<20)
			for range 1000 {
				if err := d.conn.Notify("flood", map[string]string{"x": big}); err != nil {
					return
				}
			}
			t.Error("Notify never failed against a client that does not read")
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, tc.opts, nil)
			ws, d := h.dial()
			tc.end(t, ws, d)
			waitClosed(t, d, 5*time.Second)
			time.Sleep(20 * time.Millisecond) // room for a wrong second call
			if n := d.closedCount.Load(); n != 1 {
				t.Fatalf("Closed called %d times", n)
			}
			start := time.Now()
			if err := d.conn.Notify("late", nil); !errors.Is(err, ErrClosed) {
				t.Errorf("Notify after close = %v, want ErrClosed", err)
			}
			d.conn.Close(1000, "again") // idempotent, must not panic or block
			if el := time.Since(start); el > time.Second {
				t.Errorf("Notify/Close on a closed conn took %v", el)
			}
		})
	}
}

// TestNotifyRacesClose hammers Notify from many goroutines while the
// connection closes; under -race this proves Notify neither panics nor blocks.
func TestNotifyRacesClose(t *testing.T) {
	h := newHarness(t, Options{SendQueue: 8}, nil)
	ws, d := h.dial()
	go func() {
		for {
			if _, _, err := ws.ReadMessage(); err != nil {
				return
			}
		}
	}()
	var wg sync.WaitGroup
	for g := range 16 {
		wg.Go(func() {
			for i := range 200 {
				err := d.conn.Notify("n", map[string]int{"g": g, "i": i})
				if err != nil && !errors.Is(err, ErrClosed) && !errors.Is(err, ErrSendQueueFull) {
					t.Errorf("Notify: %v", err)
				}
				if g == 0 && i == 100 {
					d.conn.Close(1000, "")
				}
			}
		})
	}
	wg.Wait()
	waitClosed(t, d, 5*time.Second)
}

func TestSlowReader(t *testing.T) {
	tests := []struct {
		name    string
		queue   int
		payload int
	}{
		{name: "queue of one", queue: 1, payload: 64 << 10},
		{name: "small queue", queue: 4, payload: 256 << 10},
		{name: "small messages", queue: 16, payload: 1 << 10},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, Options{SendQueue: tc.queue}, nil)
			_, d := h.dial() // the client never reads
			payload := strings.Repeat("x", tc.payload)
			var slowest time.Duration
			var err error
			for i := 0; i < 200000 && err == nil; i++ {
				start := time.Now()
				err = d.conn.Notify("flood", map[string]any{"i": i, "p": payload})
				slowest = max(slowest, time.Since(start))
			}
			if !errors.Is(err, ErrSendQueueFull) {
				t.Fatalf("Notify error = %v, want ErrSendQueueFull", err)
			}
			if slowest > 2*time.Second { // generous for loaded machines; a blocking Notify would hang
				t.Errorf("a Notify call blocked for %v", slowest)
			}
			waitClosed(t, d, 5*time.Second)
			if err := d.conn.Notify("late", nil); !errors.Is(err, ErrClosed) {
				t.Errorf("Notify after overflow = %v, want ErrClosed", err)
			}
			if !strings.Contains(h.logs.String(), "too slow") {
				t.Errorf("overflow not logged:\n%s", h.logs.String())
			}
		})
	}
}

func TestCloseFlushesQueue(t *testing.T) {
	longReason := strings.Repeat("é", 100) // 200 bytes: must be cut on a rune boundary
	tests := []struct {
		name       string
		queued     int
		code       int
		reason     string
		wantCode   int
		wantReason string
	}{
		{name: "nothing queued", queued: 0, code: 4000, reason: "bye", wantCode: 4000, wantReason: "bye"},
		{name: "one queued", queued: 1, code: 1000, reason: "kicked", wantCode: 1000, wantReason: "kicked"},
		{name: "full queue", queued: 256, code: 1001, reason: "serverShutdown", wantCode: 1001, wantReason: "serverShutdown"},
		{name: "invalid code becomes 1000", queued: 3, code: 1006, reason: "x", wantCode: 1000, wantReason: "x"},
		{name: "long reason is cut", queued: 2, code: 4001, reason: longReason, wantCode: 4001, wantReason: strings.Repeat("é", 61)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, Options{SendQueue: 256}, nil)
			ws, d := h.dial()
			for i := range tc.queued {
				if err := d.conn.Notify("seq", map[string]int{"i": i}); err != nil {
					t.Fatalf("Notify %d: %v", i, err)
				}
			}
			d.conn.Close(tc.code, tc.reason)
			d.conn.Close(4999, "second close is ignored")
			if err := d.conn.Notify("late", nil); !errors.Is(err, ErrClosed) {
				t.Errorf("Notify after Close = %v, want ErrClosed", err)
			}
			msgs, ce := readClose(t, ws)
			if len(msgs) != tc.queued {
				t.Fatalf("got %d messages before the close frame, want %d", len(msgs), tc.queued)
			}
			for i, m := range msgs {
				if m.str("method") != `"seq"` || m.str("params") != fmt.Sprintf(`{"i":%d}`, i) {
					t.Fatalf("message %d = %v", i, m)
				}
			}
			if ce.Code != tc.wantCode || ce.Text != tc.wantReason {
				t.Errorf("close = %d %q, want %d %q", ce.Code, ce.Text, tc.wantCode, tc.wantReason)
			}
			waitClosed(t, d, 5*time.Second)
		})
	}
}

// TestCloseInsideRequest is the `leave` flow: the session closes the socket
// from inside the request, and the client still gets the notifications sent
// before, then the response, then the close frame.
func TestCloseInsideRequest(t *testing.T) {
	tests := []struct {
		name        string
		frame       string
		notifyFirst bool
		wantMsgs    []string // method or id of each message before the close frame
	}{
		{name: "leave request", frame: `{"jsonrpc":"2.0","id":"L","method":"leave"}`, wantMsgs: []string{`"L"`}},
		{name: "notification then response", frame: `{"jsonrpc":"2.0","id":7,"method":"leave"}`, notifyFirst: true,
			wantMsgs: []string{`"participantLeft"`, `7`}},
		{name: "close from a notification", frame: `{"jsonrpc":"2.0","method":"leave"}`, wantMsgs: nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, Options{}, func(d *fakeDispatcher) {
				leave := func(d *fakeDispatcher) {
					if tc.notifyFirst {
						_ = d.conn.Notify(protocol.NotifyParticipantLeft, protocol.ParticipantLeftParams{ParticipantID: "p", Reason: protocol.ReasonClientLeave})
					}
					d.conn.Close(websocket.CloseNormalClosure, protocol.ReasonClientLeave)
					if err := d.conn.Notify("afterClose", nil); !errors.Is(err, ErrClosed) {
						t.Errorf("Notify after Close inside a call = %v", err)
					}
					time.Sleep(30 * time.Millisecond) // the writer must wait for the response anyway
				}
				d.onRequest = func(d *fakeDispatcher, _ string, _ json.RawMessage) (any, *protocol.Error) {
					leave(d)
					return nil, nil
				}
				d.onNotification = func(d *fakeDispatcher, _ string, _ json.RawMessage) *protocol.Error {
					leave(d)
					return nil
				}
			})
			ws, d := h.dial()
			send(t, ws, tc.frame)
			send(t, ws, `{"jsonrpc":"2.0","id":"ignored","method":"ping"}`) // arrives while closing
			msgs, ce := readClose(t, ws)
			var got []string
			for _, m := range msgs {
				if id, ok := m["id"]; ok {
					got = append(got, string(id))
					if m.str("result") != "{}" {
						t.Errorf("response = %v, want result {}", m)
					}
				} else {
					got = append(got, m.str("method"))
				}
			}
			if strings.Join(got, ",") != strings.Join(tc.wantMsgs, ",") {
				t.Errorf("messages before close = %v, want %v", got, tc.wantMsgs)
			}
			if ce.Code != websocket.CloseNormalClosure || ce.Text != protocol.ReasonClientLeave {
				t.Errorf("close = %d %q", ce.Code, ce.Text)
			}
			waitClosed(t, d, 5*time.Second)
			if calls := d.callLog(); len(calls) != 1 {
				t.Errorf("frames after Close reached the dispatcher: %v", calls)
			}
		})
	}
}
