package signaling

import (
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/gorilla/websocket"
	"golang.org/x/time/rate"

	"github.com/starling-rtc/starling/protocol"
)

// Dispatcher is what one connection drives. Calls come from the connection's
// single reader goroutine, in order, so an implementation needs no locking
// against itself; it still needs it against other goroutines (rooms) that
// touch the same state. While a call runs the socket is not read, so calls
// should be short; the silence timeout is paused meanwhile. A Dispatcher may
// also implement AfterResponder.
type Dispatcher interface {
	// Request handles a request and returns its result (marshalled as
	// `result`; nil means {}) or an error. The response is queued after
	// Request returns, so it precedes anything the connection sends later,
	// even when Request itself calls Conn.Close (the `leave` flow).
	Request(method string, params json.RawMessage) (result any, err *protocol.Error)
	// Notification handles a client notification (no id). A non-nil error
	// is sent back as a JSON-RPC error response with "id": null so the
	// client still learns what was wrong.
	Notification(method string, params json.RawMessage) *protocol.Error
	// Closed is called exactly once when the socket is gone (read error,
	// timeout, Close), after which no more calls happen.
	Closed()
}

// Options configure the transport. Zero values take the defaults of
// docs/PROTOCOL.md.
type Options struct {
	PingInterval time.Duration              // default 10s: server sends a WebSocket ping
	ReadTimeout  time.Duration              // default 30s: peer silent this long is dropped
	MaxFrame     int64                      // default 1 MiB: larger frames close the socket with 1009
	SendQueue    int                        // default 256 messages: bounded outgoing queue; a full queue closes the connection
	WriteTimeout time.Duration              // default 10s
	CheckOrigin  func(r *http.Request) bool // nil = allow all
	Logger       *slog.Logger               // nil = slog.Default()
	// Observe, if set, is called once per message answered or dispatched,
	// with its method ("" if refused before it was known), the error code
	// sent (0 = success) and the time spent (metrics).
	Observe func(method string, code int, elapsed time.Duration)
	// RateLimit is the sustained messages per second accepted from one
	// connection (0 = unlimited), RateBurst the burst above it; messages
	// beyond get a 429 error and are not dispatched.
	RateLimit float64
	RateBurst int
}

// Defaults, from docs/PROTOCOL.md.
const (
	DefaultPingInterval = 10 * time.Second
	DefaultReadTimeout  = 30 * time.Second
	DefaultMaxFrame     = 1 << 20
	DefaultSendQueue    = 256
	DefaultWriteTimeout = 10 * time.Second
)

// maxCloseWait bounds how long a closing side waits for the peer's close
// frame (or drains an oversized frame) before cutting TCP. Closing TCP with
// unread input makes the kernel send RST, which can destroy the close frame
// we just sent before the peer reads it.
const maxCloseWait = 2 * time.Second

// maxLingerBytes bounds what is discarded from a peer whose frame was too big.
const maxLingerBytes = 16 << 20

func (o Options) withDefaults() Options {
	if o.PingInterval <= 0 {
		o.PingInterval = DefaultPingInterval
	}
	if o.ReadTimeout <= 0 {
		o.ReadTimeout = DefaultReadTimeout
	}
	if o.MaxFrame <= 0 {
		o.MaxFrame = DefaultMaxFrame
	}
	if o.SendQueue <= 0 {
		o.SendQueue = DefaultSendQueue
	}
	if o.WriteTimeout <= 0 {
		o.WriteTimeout = DefaultWriteTimeout
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return o
}

var (
	// ErrClosed is returned by Notify once Close was called or the socket is gone.
	ErrClosed = errors.New("signaling: connection closed")
	// ErrSendQueueFull is returned by Notify when the peer does not read fast
	// enough; the connection has been closed.
	ErrSendQueueFull = errors.New("signaling: send queue full, connection closed")
)

type connState int

const (
	stateOpen    connState = iota
	stateClosing           // Close was called: no new messages, queue is being flushed
	stateClosed            // socket is gone or being torn down
)

// Conn is one WebSocket: one reader goroutine, one writer goroutine.
type Conn struct {
	ws     *websocket.Conn
	opts   Options
	log    *slog.Logger
	remote string

	limiter *rate.Limiter // see ratelimit.go; only the reader uses it

	send chan []byte // encoded frames; only the writer receives

	mu             sync.Mutex
	state          connState
	dispatching    bool   // the reader is inside a Dispatcher call
	closeSignalled bool   // closeReq has been closed
	closeFrame     []byte // payload of the close frame Close asked for
	cause          error  // why the connection was aborted, for the log

	closeReq   chan struct{} // closed when the writer must flush and send closeFrame
	readEnded  chan struct{} // closed when the reader stopped reading
	writerDone chan struct{}
	done       chan struct{}
}

func newConn(ws *websocket.Conn, opts Options) *Conn {
	return &Conn{
		ws:         ws,
		opts:       opts,
		log:        opts.Logger.With("remote", ws.RemoteAddr().String()),
		remote:     ws.RemoteAddr().String(),
		send:       make(chan []byte, opts.SendQueue),
		closeReq:   make(chan struct{}),
		readEnded:  make(chan struct{}),
		writerDone: make(chan struct{}),
		done:       make(chan struct{}),
	}
}

// RemoteAddr is the peer's network address as seen by the server.
func (c *Conn) RemoteAddr() string { return c.remote }

// Done is closed after the socket is closed, both goroutines have exited and
// Dispatcher.Closed has returned.
func (c *Conn) Done() <-chan struct{} { return c.done }

// Notify queues a notification. It never blocks and is safe from any
// goroutine. It fails with ErrClosed after Close or once the socket is gone,
// and with ErrSendQueueFull when the peer is too slow, in which case the
// connection is dropped. Params nil are sent as {}.
func (c *Conn) Notify(method string, params any) error {
	raw, err := encodeObject(params)
	if err != nil {
		return err
	}
	frame, err := encode(protocol.Message{JSONRPC: "2.0", Method: method, Params: raw})
	if err != nil {
		return err
	}
	return c.enqueue(frame, false)
}

// Close flushes what is queued (bounded by WriteTimeout), sends a close frame
// with code and reason, and closes the socket. It does not wait: use Done.
// It is idempotent; only the first call's code counts. An invalid close code
// is sent as 1000 and the reason is cut to the 123 bytes a close frame holds.
// Called from inside a Dispatcher call, the response to that call is still
// sent before the close frame.
func (c *Conn) Close(code int, reason string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.state != stateOpen {
		return
	}
	c.state = stateClosing
	c.closeFrame = websocket.FormatCloseMessage(sanitizeCloseCode(code), truncateUTF8(reason, 123))
	if !c.dispatching {
		c.signalCloseLocked()
	}
}

func (c *Conn) signalCloseLocked() {
	if !c.closeSignalled {
		c.closeSignalled = true
		close(c.closeReq)
	}
}

// enqueue hands a frame to the writer. inDispatch lets the response of the
// call that requested Close through, so it is flushed before the close frame.
func (c *Conn) enqueue(frame []byte, inDispatch bool) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.enqueueLocked(frame, inDispatch)
}

func (c *Conn) enqueueLocked(frame []byte, inDispatch bool) error {
	if c.state == stateClosed || (c.state == stateClosing && !inDispatch) {
		return ErrClosed
	}
	select {
	case c.send <- frame:
		return nil
	default:
	}
	c.abortLocked(ErrSendQueueFull)
	return ErrSendQueueFull
}

// abortLocked drops the connection without blocking the caller: a deadline in
// the past wakes the reader and writer, and the reader tears down. Closing
// the socket here could block (a TLS close_notify waits on the writer).
func (c *Conn) abortLocked(cause error) {
	if c.state == stateClosed {
		return
	}
	c.state = stateClosed
	c.cause = cause
	_ = c.ws.NetConn().SetDeadline(time.Unix(1, 0))
}

// extendRead pushes the read deadline out; under mu so it cannot undo an abort.
func (c *Conn) extendRead() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.state != stateClosed {
		_ = c.ws.SetReadDeadline(time.Now().Add(c.opts.ReadTimeout))
	}
}

// serve runs the connection until the socket is gone; the calling goroutine
// is the reader.
func (c *Conn) serve(d Dispatcher) {
	go c.writeLoop()
	err := c.readLoop(d)

	c.mu.Lock()
	wasAborted := c.state == stateClosed
	c.state = stateClosed
	cause := c.cause
	c.mu.Unlock()
	close(c.readEnded)

	if errors.Is(err, websocket.ErrReadLimit) {
		// gorilla already sent 1009; let the writer finish, then drain the
		// rest of the oversized frame so the close frame is not lost to RST.
		<-c.writerDone
		c.linger()
	}
	_ = c.ws.Close()
	<-c.writerDone

	switch {
	case wasAborted && errors.Is(cause, ErrSendQueueFull):
		c.log.Warn("signaling: peer too slow, connection dropped", "queue", c.opts.SendQueue)
	case wasAborted && cause != nil:
		c.log.Info("signaling: connection dropped", "cause", cause)
	case isTimeout(err):
		c.log.Info("signaling: peer silent, connection dropped", "timeout", c.opts.ReadTimeout)
	case errors.Is(err, websocket.ErrReadLimit):
		c.log.Info("signaling: frame too large, connection closed", "limit", c.opts.MaxFrame)
	default:
		c.log.Debug("signaling: connection closed", "err", err)
	}
	c.callClosed(d)
	close(c.done)
}

func (c *Conn) linger() {
	nc := c.ws.NetConn()
	if cw, ok := nc.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	}
	_ = nc.SetReadDeadline(time.Now().Add(c.closeWait()))
	_, _ = io.Copy(io.Discard, io.LimitReader(nc, maxLingerBytes))
}

func (c *Conn) closeWait() time.Duration {
	return min(c.opts.WriteTimeout, maxCloseWait)
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// sanitizeCloseCode keeps codes a peer accepts in a close frame (RFC 6455
// 7.4); 1005, 1006 and 1015 must never be sent.
func sanitizeCloseCode(code int) int {
	switch {
	case code >= 1000 && code <= 1003, code >= 1007 && code <= 1014, code >= 3000 && code <= 4999:
		return code
	}
	return websocket.CloseNormalClosure
}

func truncateUTF8(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}
