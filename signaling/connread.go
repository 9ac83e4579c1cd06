package signaling

import (
	"encoding/json"
	"errors"
	"io"
	"runtime/debug"
	"time"

	"github.com/gorilla/websocket"

	"github.com/starling-rtc/starling/protocol"
)

// The connection's reader: messages read within their size limit, parsed
// as JSON-RPC, and handed to the Dispatcher (a panic there is logged and
// becomes an internal error, never a crash).

func (c *Conn) readLoop(d Dispatcher) error {
	c.ws.SetReadLimit(c.opts.MaxFrame)
	c.ws.SetPongHandler(func(string) error {
		c.extendRead()
		return nil
	})
	c.ws.SetPingHandler(func(data string) error {
		c.extendRead()
		err := c.ws.WriteControl(websocket.PongMessage, []byte(data), time.Now().Add(c.opts.WriteTimeout))
		if err == nil || errors.Is(err, websocket.ErrCloseSent) || isTimeout(err) {
			return nil // a lost pong is not worth ending the session for
		}
		return err
	})
	for {
		// The timeout starts when we wait, not when the last frame came:
		// time spent in the Dispatcher is not the peer's silence.
		c.extendRead()
		typ, data, err := c.readMessage()
		if errors.Is(err, errInflatedTooLarge) {
			// The connection stays up only to send the close frame and
			// hear the peer's; anything it still sends is not dispatched.
			c.Close(websocket.CloseMessageTooBig, "message too big")
			continue
		}
		if err != nil {
			return err
		}
		if typ == websocket.BinaryMessage {
			c.reply(nil, protocol.Errorf(protocol.CodeInvalidRequest,
				"invalid request: binary frames are not supported, send each JSON-RPC message as a text frame"))
			continue
		}
		c.handleText(d, data)
	}
}

// errInflatedTooLarge: a compressed message inflated beyond MaxFrame.
var errInflatedTooLarge = errors.New("signaling: message inflates beyond the limit")

// readMessage reads one message of at most MaxFrame bytes as the peer
// wrote it. gorilla's read limit counts the bytes on the wire, so with
// permessage-deflate (browsers use it) a few kB could inflate to any size;
// the limit here is on the inflated message, which PROTOCOL.md's 1 MiB is
// about. Frames too large on the wire still end in gorilla's ErrReadLimit.
func (c *Conn) readMessage() (int, []byte, error) {
	typ, r, err := c.ws.NextReader()
	if err != nil {
		return typ, nil, err
	}
	data, err := io.ReadAll(io.LimitReader(r, c.opts.MaxFrame+1))
	if err != nil {
		return typ, nil, err
	}
	if int64(len(data)) > c.opts.MaxFrame {
		return typ, nil, errInflatedTooLarge
	}
	return typ, data, nil
}

func (c *Conn) handleText(d Dispatcher, data []byte) {
	req, perr := parseRequest(data)
	if perr == nil {
		perr = c.limit() // see ratelimit.go
	}
	if perr != nil {
		c.reply(req.id, perr)
		return
	}

	c.mu.Lock()
	if c.state != stateOpen {
		c.mu.Unlock()
		return // closing: read on only to see the peer's close frame
	}
	c.dispatching = true
	c.mu.Unlock()

	var frame []byte
	if req.notification {
		if err := c.callNotification(d, req.method, req.params); err != nil {
			frame = encodeResponse(nil, nil, err)
		}
	} else {
		result, err := c.callRequest(d, req.method, req.params)
		frame = encodeResponse(req.id, result, err)
	}

	// One critical section, so a Close racing with the end of the call
	// cannot let the writer flush before the response is queued.
	c.mu.Lock()
	c.dispatching = false
	if frame != nil {
		_ = c.enqueueLocked(frame, true)
	}
	if c.state == stateClosing {
		c.signalCloseLocked()
	}
	c.mu.Unlock()
	if a, ok := d.(AfterResponder); ok {
		c.callAfterResponse(a, req.method)
	}
}

// AfterResponder is an optional Dispatcher extension: AfterResponse runs on
// the reader goroutine right after a request's or notification's response is
// queued, for work that must follow the response on the wire (the first
// subscriber offer after `join`). It runs after every dispatched call, also
// when the call failed or panicked, but not for frames refused before
// dispatch (invalid, or arriving after Close).
type AfterResponder interface {
	AfterResponse()
}

func (c *Conn) callAfterResponse(a AfterResponder, method string) {
	defer func() {
		if p := recover(); p != nil {
			c.logPanic("afterResponse", method, p) // the response is already out
		}
	}()
	a.AfterResponse()
}

// reply queues an error response that did not involve the Dispatcher.
func (c *Conn) reply(id json.RawMessage, err *protocol.Error) {
	c.observe("", time.Now(), &err)
	_ = c.enqueue(encodeResponse(id, nil, err), false)
}

func (c *Conn) callRequest(d Dispatcher, method string, params json.RawMessage) (result any, perr *protocol.Error) {
	defer c.observe(method, time.Now(), &perr) // deferred first: sees a recovered panic's error
	defer func() {
		if p := recover(); p != nil {
			c.logPanic("request", method, p)
			result, perr = nil, protocol.Errorf(protocol.CodeInternal, "internal error while handling %q", method)
		}
	}()
	return d.Request(method, params)
}

func (c *Conn) callNotification(d Dispatcher, method string, params json.RawMessage) (perr *protocol.Error) {
	defer c.observe(method, time.Now(), &perr)
	defer func() {
		if p := recover(); p != nil {
			c.logPanic("notification", method, p)
			perr = protocol.Errorf(protocol.CodeInternal, "internal error while handling %q", method)
		}
	}()
	return d.Notification(method, params)
}

func (c *Conn) callClosed(d Dispatcher) {
	defer func() {
		if p := recover(); p != nil {
			c.logPanic("closed", "", p)
		}
	}()
	d.Closed()
}

func (c *Conn) logPanic(kind, method string, p any) {
	c.log.Error("signaling: dispatcher panic", "kind", kind, "method", method, "panic", p, "stack", string(debug.Stack()))
}
