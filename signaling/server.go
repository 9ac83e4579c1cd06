package signaling

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"

	"github.com/gorilla/websocket"

	"github.com/starling-rtc/starling/protocol"
)

// NewHandler upgrades GET requests to WebSocket and runs a Conn;
// newDispatcher is called once per socket (it may keep the *Conn to send
// notifications). ServeHTTP returns when the connection is over, after
// Dispatcher.Closed. Note that http.Server.Shutdown does not wait for
// upgraded connections: whoever owns the sessions must Close them.
func NewHandler(opts Options, newDispatcher func(c *Conn, r *http.Request) Dispatcher) http.Handler {
	opts = opts.withDefaults()
	checkOrigin := opts.CheckOrigin
	if checkOrigin == nil {
		// gorilla's nil means same-origin only; ours means allow all, since
		// native and CLI clients send arbitrary or no Origin.
		checkOrigin = func(*http.Request) bool { return true }
	}
	return &handler{
		opts:          opts,
		newDispatcher: newDispatcher,
		upgrader: websocket.Upgrader{
			HandshakeTimeout: opts.WriteTimeout,
			CheckOrigin:      checkOrigin,
			// permessage-deflate when the client offers it (browsers do):
			// SDP, most of the signaling bytes, shrinks ~3x.
			EnableCompression: true,
			Error:             upgradeError,
		},
	}
}

// upgradeError answers a request the upgrader refused with a body saying
// what was wrong: gorilla's own answer is only the status text ("Bad
// Request", "Forbidden"), which left a client that forgot the upgrade
// headers, or a page of a site not allowed, to guess.
func upgradeError(w http.ResponseWriter, r *http.Request, status int, reason error) {
	msg := "signaling: " + strings.TrimPrefix(reason.Error(), "websocket: ")
	switch status {
	case http.StatusForbidden:
		msg = fmt.Sprintf("signaling: pages of %q may not connect (the server's own origin and http.allowed_origins may)", r.Header.Get("Origin"))
	case http.StatusBadRequest:
		msg += ": GET /v1/rtc is the signaling WebSocket (docs/PROTOCOL.md); connect with a WebSocket client"
	}
	w.Header().Set("Sec-Websocket-Version", "13") // as gorilla's own answer: the version spoken
	http.Error(w, msg, status)
}

type handler struct {
	opts          Options
	newDispatcher func(c *Conn, r *http.Request) Dispatcher
	upgrader      websocket.Upgrader
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		w.Header().Set("Allow", http.MethodGet)
		http.Error(w, "signaling: use GET with a WebSocket upgrade", http.StatusMethodNotAllowed)
		return
	}
	ws, err := h.upgrader.Upgrade(w, r, nil)
	if err != nil {
		// The upgrader has already answered with an HTTP error.
		h.opts.Logger.Debug("signaling: upgrade failed", "remote", r.RemoteAddr, "err", err)
		return
	}
	// Messages are compressed one by one (no context takeover), at a level
	// chosen by size: see writeFrame.
	c := newConn(ws, h.opts)
	d := h.makeDispatcher(c, r)
	if d == nil {
		c.Close(websocket.CloseInternalServerErr, "internal error")
		d = nopDispatcher{}
	}
	c.serve(d)
}

func (h *handler) makeDispatcher(c *Conn, r *http.Request) (d Dispatcher) {
	defer func() {
		if p := recover(); p != nil {
			c.logPanic("newDispatcher", "", p)
			d = nil
		}
	}()
	return h.newDispatcher(c, r)
}

// nopDispatcher keeps a Conn whose dispatcher could not be made well-formed
// while it closes.
type nopDispatcher struct{}

func (nopDispatcher) Request(string, json.RawMessage) (any, *protocol.Error) {
	return nil, protocol.Errorf(protocol.CodeInternal, "internal error")
}
func (nopDispatcher) Notification(string, json.RawMessage) *protocol.Error { return nil }
func (nopDispatcher) Closed()                                              {}

// request is a validated incoming JSON-RPC request or notification.
type request struct {
	id           json.RawMessage // raw, echoed verbatim; nil for notifications
	method       string
	params       json.RawMessage
	notification bool
}

// parseRequest validates one text frame as a JSON-RPC 2.0 request. On error
// the returned request carries the id when it could be read, so the error
// response can echo it.
func parseRequest(data []byte) (request, *protocol.Error) {
	if !json.Valid(data) {
		return request{}, protocol.Errorf(protocol.CodeParseError, "parse error: the frame is not valid JSON")
	}
	switch bytes.TrimLeft(data, " \t\r\n")[0] {
	case '{':
	case '[':
		return request{}, invalidRequest("batch requests are not supported, send one object per frame")
	default:
		return request{}, invalidRequest("a message must be a JSON object")
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(data, &fields); err != nil {
		return request{}, protocol.Errorf(protocol.CodeParseError, "parse error: %v", err)
	}

	var req request
	if id, ok := fields["id"]; ok {
		if !validID(id) {
			return request{}, invalidRequest("id must be a string, a number or null")
		}
		req.id = id
	} else {
		req.notification = true
	}

	var version string
	if raw, ok := fields["jsonrpc"]; !ok || !isString(raw) || json.Unmarshal(raw, &version) != nil || version != "2.0" {
		return req, invalidRequest(`jsonrpc must be "2.0"`)
	}
	_, hasResult := fields["result"]
	_, hasError := fields["error"]
	if hasResult || hasError {
		return req, invalidRequest("responses are not accepted: the server sends no requests")
	}
	rawMethod, ok := fields["method"]
	if !ok {
		return req, invalidRequest("method is missing")
	}
	if !isString(rawMethod) || json.Unmarshal(rawMethod, &req.method) != nil || req.method == "" {
		return req, invalidRequest("method must be a non-empty string")
	}
	if params, ok := fields["params"]; ok {
		if c := params[0]; c != '{' && c != '[' && !bytes.Equal(params, nullJSON) {
			return req, invalidRequest("params must be an object")
		}
		req.params = params
	}
	return req, nil
}

func invalidRequest(msg string) *protocol.Error {
	return protocol.Errorf(protocol.CodeInvalidRequest, "invalid request: %s", msg)
}

// validID accepts what JSON-RPC 2.0 allows as an id. The raw value comes from
// a valid document, so its first byte tells its type.
func validID(raw json.RawMessage) bool {
	switch c := raw[0]; {
	case c == '"', c == '-', c >= '0' && c <= '9':
		return true
	}
	return bytes.Equal(raw, nullJSON)
}

func isString(raw json.RawMessage) bool { return len(raw) > 0 && raw[0] == '"' }

var (
	nullJSON  = []byte("null")
	emptyJSON = json.RawMessage("{}")
)

// encodeResponse builds a response frame; a nil id is sent as null.
func encodeResponse(id json.RawMessage, result any, perr *protocol.Error) []byte {
	if id == nil {
		id = json.RawMessage(nullJSON)
	}
	msg := protocol.Message{JSONRPC: "2.0", ID: id}
	if perr == nil {
		raw, err := encodeObject(result)
		if err != nil {
			perr = protocol.Errorf(protocol.CodeInternal, "internal error: cannot encode the result: %v", err)
		} else {
			msg.Result = raw
		}
	}
	msg.Error = perr
	frame, err := encode(msg)
	if err != nil {
		// Only the id could be at fault, and it was validated on the way in.
		frame, _ = encode(protocol.Message{JSONRPC: "2.0", ID: json.RawMessage(nullJSON),
			Error: protocol.Errorf(protocol.CodeInternal, "internal error: cannot encode the response")})
	}
	return frame
}

// encodeObject encodes a result or params value; nil (also a typed nil
// pointer) becomes {} because the protocol always carries an object there.
func encodeObject(v any) (json.RawMessage, error) {
	if v == nil {
		return emptyJSON, nil
	}
	b, err := encode(v)
	if err != nil {
		return nil, err
	}
	if bytes.Equal(b, nullJSON) {
		return emptyJSON, nil
	}
	return b, nil
}

// encode marshals without HTML escaping, so ids and SDP are echoed byte for
// byte (json.Marshal would rewrite <, > and & even inside a RawMessage).
func encode(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}
