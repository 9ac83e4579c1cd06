package signaling

import (
	"net/http"
	"strings"
	"testing"

	"github.com/gorilla/websocket"

	"github.com/starling-rtc/starling/protocol"
)

// TestInvalidFrames sends frames that are not valid requests. Each gets an
// error response, never reaches the dispatcher, and the session goes on.
func TestInvalidFrames(t *testing.T) {
	tests := []struct {
		name     string
		frame    string
		binary   bool
		wantCode int
		wantID   string
		wantMsg  string // substring of the error message
	}{
		{name: "truncated JSON", frame: `{"jsonrpc":"2.0",`, wantCode: protocol.CodeParseError, wantID: `null`},
		{name: "not JSON", frame: `hello`, wantCode: protocol.CodeParseError, wantID: `null`},
		{name: "empty frame", frame: ``, wantCode: protocol.CodeParseError, wantID: `null`},
		{name: "two values", frame: `{} {}`, wantCode: protocol.CodeParseError, wantID: `null`},
		{name: "batch", frame: `[{"jsonrpc":"2.0","id":1,"method":"ping"}]`, wantCode: protocol.CodeInvalidRequest, wantID: `null`, wantMsg: "batch"},
		{name: "empty batch", frame: ` []`, wantCode: protocol.CodeInvalidRequest, wantID: `null`, wantMsg: "batch"},
		{name: "string", frame: `"ping"`, wantCode: protocol.CodeInvalidRequest, wantID: `null`},
		{name: "number", frame: `42`, wantCode: protocol.CodeInvalidRequest, wantID: `null`},
		{name: "null", frame: `null`, wantCode: protocol.CodeInvalidRequest, wantID: `null`},
		{name: "wrong version", frame: `{"jsonrpc":"1.0","id":3,"method":"ping"}`, wantCode: protocol.CodeInvalidRequest, wantID: `3`, wantMsg: "jsonrpc"},
		{name: "missing version", frame: `{"id":"x","method":"ping"}`, wantCode: protocol.CodeInvalidRequest, wantID: `"x"`, wantMsg: "jsonrpc"},
		{name: "numeric version", frame: `{"jsonrpc":2.0,"id":4,"method":"ping"}`, wantCode: protocol.CodeInvalidRequest, wantID: `4`, wantMsg: "jsonrpc"},
		{name: "missing method", frame: `{"jsonrpc":"2.0","id":5}`, wantCode: protocol.CodeInvalidRequest, wantID: `5`, wantMsg: "method"},
		{name: "numeric method", frame: `{"jsonrpc":"2.0","id":"m","method":7}`, wantCode: protocol.CodeInvalidRequest, wantID: `"m"`, wantMsg: "method"},
		{name: "null method", frame: `{"jsonrpc":"2.0","id":6,"method":null}`, wantCode: protocol.CodeInvalidRequest, wantID: `6`, wantMsg: "method"},
		{name: "empty method", frame: `{"jsonrpc":"2.0","id":6,"method":""}`, wantCode: protocol.CodeInvalidRequest, wantID: `6`, wantMsg: "method"},
		{name: "notification without method", frame: `{"jsonrpc":"2.0","params":{}}`, wantCode: protocol.CodeInvalidRequest, wantID: `null`, wantMsg: "method"},
		{name: "object id", frame: `{"jsonrpc":"2.0","id":{"a":1},"method":"ping"}`, wantCode: protocol.CodeInvalidRequest, wantID: `null`, wantMsg: "id"},
		{name: "array id", frame: `{"jsonrpc":"2.0","id":[1],"method":"ping"}`, wantCode: protocol.CodeInvalidRequest, wantID: `null`, wantMsg: "id"},
		{name: "boolean id", frame: `{"jsonrpc":"2.0","id":true,"method":"ping"}`, wantCode: protocol.CodeInvalidRequest, wantID: `null`, wantMsg: "id"},
		{name: "result response", frame: `{"jsonrpc":"2.0","id":9,"result":{}}`, wantCode: protocol.CodeInvalidRequest, wantID: `9`, wantMsg: "responses"},
		{name: "error response", frame: `{"jsonrpc":"2.0","id":"r","error":{"code":1,"message":"x"}}`, wantCode: protocol.CodeInvalidRequest, wantID: `"r"`, wantMsg: "responses"},
		{name: "scalar params", frame: `{"jsonrpc":"2.0","id":8,"method":"ping","params":"x"}`, wantCode: protocol.CodeInvalidRequest, wantID: `8`, wantMsg: "params"},
		{name: "binary frame", frame: `{"jsonrpc":"2.0","id":1,"method":"ping"}`, binary: true, wantCode: protocol.CodeInvalidRequest, wantID: `null`, wantMsg: "binary frames are not supported"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, Options{}, nil)
			ws, d := h.dial()
			typ := websocket.TextMessage
			if tc.binary {
				typ = websocket.BinaryMessage
			}
			if err := ws.WriteMessage(typ, []byte(tc.frame)); err != nil {
				t.Fatal(err)
			}
			m := readMessage(t, ws)
			e := m.errorObject(t)
			if e.Code != tc.wantCode || m.str("id") != tc.wantID {
				t.Errorf("got code %d id %s (%s), want code %d id %s", e.Code, m.str("id"), e.Message, tc.wantCode, tc.wantID)
			}
			if !strings.Contains(e.Message, tc.wantMsg) {
				t.Errorf("message %q does not mention %q", e.Message, tc.wantMsg)
			}
			ping(t, ws, `"still alive"`)
			if calls := d.callLog(); len(calls) != 1 {
				t.Errorf("invalid frame reached the dispatcher: %v", calls)
			}
		})
	}
}

func TestHandlerHTTP(t *testing.T) {
	tests := []struct {
		name       string
		opts       Options
		do         func(h *harness) (*http.Response, error)
		wantStatus int
	}{
		{name: "POST is refused", wantStatus: http.StatusMethodNotAllowed, do: func(h *harness) (*http.Response, error) {
			return h.srv.Client().Post(h.srv.URL, "application/json", strings.NewReader("{}"))
		}},
		{name: "plain GET is not an upgrade", wantStatus: http.StatusBadRequest, do: func(h *harness) (*http.Response, error) {
			return h.srv.Client().Get(h.srv.URL)
		}},
		{name: "origin refused", wantStatus: http.StatusForbidden,
			opts: Options{CheckOrigin: func(r *http.Request) bool { return r.Header.Get("Origin") == "https://ok.example" }},
			do: func(h *harness) (*http.Response, error) {
				_, resp, err := websocket.DefaultDialer.Dial(h.url, http.Header{"Origin": {"https://evil.example"}})
				return resp, err
			}},
		{name: "any origin by default", wantStatus: http.StatusSwitchingProtocols, do: func(h *harness) (*http.Response, error) {
			ws, resp, err := websocket.DefaultDialer.Dial(h.url, http.Header{"Origin": {"https://elsewhere.example"}})
			if err == nil {
				ws.Close()
				<-(<-h.conns).closed
			}
			return resp, err
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, tc.opts, nil)
			resp, _ := tc.do(h)
			if resp == nil {
				t.Fatal("no HTTP response")
			}
			resp.Body.Close()
			if resp.StatusCode != tc.wantStatus {
				t.Errorf("status = %d, want %d", resp.StatusCode, tc.wantStatus)
			}
		})
	}
}

// TestBrokenDispatcherFactory: a factory that fails must not take the
// server down; the client sees 1011 and the handler returns.
func TestBrokenDispatcherFactory(t *testing.T) {
	tests := []struct {
		name    string
		factory func(c *Conn, r *http.Request) Dispatcher
		wantLog string
	}{
		{name: "returns nil", factory: func(*Conn, *http.Request) Dispatcher { return nil }},
		{name: "panics", factory: func(*Conn, *http.Request) Dispatcher { panic("no rooms") }, wantLog: "no rooms"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newServer(t, Options{}, tc.factory)
			ws, resp, err := websocket.DefaultDialer.Dial(h.url, nil)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			defer ws.Close()
			_, ce := readClose(t, ws)
			if ce.Code != websocket.CloseInternalServerErr {
				t.Errorf("close code = %d, want 1011", ce.Code)
			}
			if !strings.Contains(h.logs.String(), tc.wantLog) {
				t.Errorf("log does not mention %q:\n%s", tc.wantLog, h.logs.String())
			}
		})
	}
}

// TestRemoteAddr: the Conn reports the client's address.
func TestRemoteAddr(t *testing.T) {
	h := newHarness(t, Options{}, nil)
	ws, d := h.dial()
	if got, want := d.conn.RemoteAddr(), ws.LocalAddr().String(); got != want {
		t.Errorf("RemoteAddr = %q, want %q", got, want)
	}
}
