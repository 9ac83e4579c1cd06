package signaling

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"go.uber.org/goleak"

	"github.com/starling-rtc/starling/protocol"
)

// fakeDispatcher records what the transport hands it. The hooks run on the
// connection's reader goroutine, like a real session.
type fakeDispatcher struct {
	conn           *Conn
	onRequest      func(d *fakeDispatcher, method string, params json.RawMessage) (any, *protocol.Error)
	onNotification func(d *fakeDispatcher, method string, params json.RawMessage) *protocol.Error
	onAfter        func(d *fakeDispatcher)

	mu     sync.Mutex
	calls  []string // "request:method" / "notification:method"
	params []string

	afterCount  atomic.Int32
	closedCount atomic.Int32
	closed      chan struct{}
}

func (d *fakeDispatcher) record(kind, method string, params json.RawMessage) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.calls = append(d.calls, kind+":"+method)
	d.params = append(d.params, string(params))
}

func (d *fakeDispatcher) Request(method string, params json.RawMessage) (any, *protocol.Error) {
	d.record("request", method, params)
	if d.onRequest != nil {
		return d.onRequest(d, method, params)
	}
	if method == "echo" {
		return params, nil
	}
	return nil, nil
}

func (d *fakeDispatcher) Notification(method string, params json.RawMessage) *protocol.Error {
	d.record("notification", method, params)
	if d.onNotification != nil {
		return d.onNotification(d, method, params)
	}
	return nil
}

func (d *fakeDispatcher) AfterResponse() {
	d.afterCount.Add(1)
	if d.onAfter != nil {
		d.onAfter(d)
	}
}

func (d *fakeDispatcher) Closed() {
	if d.closedCount.Add(1) == 1 {
		close(d.closed)
	}
}

func (d *fakeDispatcher) callLog() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]string(nil), d.calls...)
}

// lockedBuffer collects log output written from connection goroutines.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

type harness struct {
	t     *testing.T
	srv   *httptest.Server
	url   string
	logs  *lockedBuffer
	conns chan *fakeDispatcher
}

// newHarness serves NewHandler with fake dispatchers on a loopback httptest
// server. At cleanup it closes the server, waits for every server-side Conn
// to finish and checks with goleak that no goroutine is left behind.
func newHarness(t *testing.T, opts Options, setup func(d *fakeDispatcher)) *harness {
	t.Helper()
	var all []*fakeDispatcher
	var allMu sync.Mutex
	var h *harness
	h = newServer(t, opts, func(c *Conn, r *http.Request) Dispatcher {
		d := &fakeDispatcher{conn: c, closed: make(chan struct{})}
		if setup != nil {
			setup(d)
		}
		allMu.Lock()
		all = append(all, d)
		allMu.Unlock()
		h.conns <- d
		return d
	})
	t.Cleanup(func() {
		h.srv.Close()
		allMu.Lock()
		defer allMu.Unlock()
		for _, d := range all {
			d.conn.Close(websocket.CloseGoingAway, "test over")
			select {
			case <-d.conn.Done():
			case <-time.After(10 * time.Second):
				t.Errorf("server connection from %s never finished", d.conn.RemoteAddr())
			}
			if n := d.closedCount.Load(); n != 1 {
				t.Errorf("Closed called %d times, want 1", n)
			}
		}
	})
	return h
}

// newServer serves NewHandler with any dispatcher factory and registers the
// goleak check, which runs after every other cleanup of the test.
func newServer(t *testing.T, opts Options, factory func(c *Conn, r *http.Request) Dispatcher) *harness {
	t.Helper()
	ignore := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, ignore) })

	h := &harness{t: t, logs: &lockedBuffer{}, conns: make(chan *fakeDispatcher, 16)}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	h.srv = httptest.NewServer(NewHandler(opts, factory))
	h.url = "ws" + strings.TrimPrefix(h.srv.URL, "http")
	t.Cleanup(h.srv.Close)
	return h
}

// dial opens a client and returns it with the server side's dispatcher.
func (h *harness) dial() (*websocket.Conn, *fakeDispatcher) {
	h.t.Helper()
	ws, resp, err := websocket.DefaultDialer.Dial(h.url, nil)
	if err != nil {
		h.t.Fatalf("dial: %v", err)
	}
	resp.Body.Close()
	h.t.Cleanup(func() { ws.Close() })
	select {
	case d := <-h.conns:
		return ws, d
	case <-time.After(5 * time.Second):
		h.t.Fatal("server never created a dispatcher")
		return nil, nil
	}
}

// wireMessage keeps every member raw so tests can compare bytes exactly.
type wireMessage map[string]json.RawMessage

func (m wireMessage) str(key string) string { return string(m[key]) }

func (m wireMessage) errorObject(t *testing.T) protocol.Error {
	t.Helper()
	var e protocol.Error
	if err := json.Unmarshal(m["error"], &e); err != nil {
		t.Fatalf("response has no error object: %v (%s)", err, m["error"])
	}
	return e
}

func send(t *testing.T, ws *websocket.Conn, frame string) {
	t.Helper()
	if err := ws.WriteMessage(websocket.TextMessage, []byte(frame)); err != nil {
		t.Fatalf("write: %v", err)
	}
}

func readMessage(t *testing.T, ws *websocket.Conn) wireMessage {
	t.Helper()
	_ = ws.SetReadDeadline(time.Now().Add(5 * time.Second))
	typ, data, err := ws.ReadMessage()
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	if typ != websocket.TextMessage {
		t.Fatalf("got frame type %d, want text", typ)
	}
	var m wireMessage
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatalf("server sent invalid JSON %q: %v", data, err)
	}
	if m.str("jsonrpc") != `"2.0"` {
		t.Fatalf("server message without jsonrpc 2.0: %s", data)
	}
	return m
}

// readClose reads until the close frame and returns its error.
func readClose(t *testing.T, ws *websocket.Conn) (msgs []wireMessage, closeErr *websocket.CloseError) {
	t.Helper()
	_ = ws.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		_, data, err := ws.ReadMessage()
		if err != nil {
			ce, ok := err.(*websocket.CloseError)
			if !ok {
				t.Fatalf("connection ended without a close frame: %v", err)
			}
			return msgs, ce
		}
		var m wireMessage
		if err := json.Unmarshal(data, &m); err != nil {
			t.Fatalf("server sent invalid JSON %q: %v", data, err)
		}
		msgs = append(msgs, m)
	}
}

// ping checks the session still answers requests.
func ping(t *testing.T, ws *websocket.Conn, id string) {
	t.Helper()
	send(t, ws, `{"jsonrpc":"2.0","id":`+id+`,"method":"ping"}`)
	m := readMessage(t, ws)
	if m.str("id") != id || m.str("result") != "{}" {
		t.Fatalf("ping: got %v, want id %s and result {}", m, id)
	}
}

func waitClosed(t *testing.T, d *fakeDispatcher, within time.Duration) {
	t.Helper()
	select {
	case <-d.closed:
	case <-time.After(within):
		t.Fatalf("Closed not called within %v", within)
	}
	select {
	case <-d.conn.Done():
	case <-time.After(within):
		t.Fatalf("Done not closed within %v", within)
	}
}
