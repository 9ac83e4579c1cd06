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

	"github.com/starling-rtc/starling/protocol"
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
