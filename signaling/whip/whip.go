// Package whip serves WHIP (RFC 9725, ingest) and WHEP (playback): one
// HTTP POST of an SDP offer answered with the SDP answer, a session resource
// under the returned Location for trickle ICE, ICE restarts (PATCH) and the
// end (DELETE). A WHIP session is a room participant with a publisher
// connection only, a WHEP session one with a subscriber connection only:
// both are ordinary participants of package room (see room/answer.go), so
// others see them join and publish, and recordings see their tracks.
package whip

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"unicode"
	"unicode/utf8"

	"github.com/starling-rtc/starling/auth"
	"github.com/starling-rtc/starling/protocol"
	"github.com/starling-rtc/starling/room"
	"github.com/starling-rtc/starling/sfu"
	"github.com/starling-rtc/starling/signaling"
)

// Routes, with {room} the room name; sessions live under {id}.
const (
	RouteWHIP = "/v1/rooms/{room}/whip"
	RouteWHEP = "/v1/rooms/{room}/whep"
)

// Limits on what one request may carry.
const (
	maxSDP      = 1 << 20 // bytes of an offer or an sdpfrag: the WebSocket signaling's message limit (a Chromium WHEP offer of 64 video sections is 320 KB)
	maxRoomName = 128
	maxName     = 256
)

// Content types of RFC 9725.
const (
	typeSDP     = "application/sdp"
	typeSDPFrag = "application/trickle-ice-sdpfrag"
)

// Options configure a Handler.
type Options struct {
	Rooms *room.Manager
	// Auth checks bearer tokens; without keys the server is open and no
	// token is needed, as for the WebSocket `join`.
	Auth *auth.Verifier
	// Limiter bounds new sessions per client IP (nil = unlimited), shared
	// with `join`: beyond it POST gets 429.
	Limiter *signaling.IPLimiter
	// CheckOrigin decides which browser origins may call the endpoints
	// (CORS); nil allows every origin.
	CheckOrigin func(*http.Request) bool
	// Observe, if set, hears every request's endpoint kind ("whip",
	// "whep"), method and response status (for metrics).
	Observe func(kind, method string, status int)
	// InCluster, in a cluster, reports whether a room without a part on
	// this node exists on another node (WHEP may watch it from here); nil
	// on a single node. A non-nil error says the cluster's room state did
	// not answer (503: try again; the room may exist).
	InCluster func(room string) (bool, error)
	Logger    *slog.Logger
}

// Handler serves the WHIP and WHEP endpoints and their sessions.
type Handler struct {
	opts Options
	log  *slog.Logger

	mu       sync.Mutex
	sessions map[string]*session // by id
}

// New makes a Handler; Register puts it on a mux.
func New(opts Options) *Handler {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	return &Handler{opts: opts, log: opts.Logger.With("component", "whip"), sessions: map[string]*session{}}
}

// Register adds the WHIP and WHEP routes to mux. Methods are dispatched
// here, not in the patterns, so a wrong one gets 405 with Allow.
func (h *Handler) Register(mux *http.ServeMux) {
	mux.HandleFunc(RouteWHIP, h.observed(kindWHIP, h.endpoint))
	mux.HandleFunc(RouteWHEP, h.observed(kindWHEP, h.endpoint))
	mux.HandleFunc(RouteWHIP+"/{id}", h.observed(kindWHIP, h.resource))
	mux.HandleFunc(RouteWHEP+"/{id}", h.observed(kindWHEP, h.resource))
}

// observed adapts a handler of one kind and reports each response's status.
func (h *Handler) observed(k kind, f func(http.ResponseWriter, *http.Request, kind)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if h.opts.Observe == nil {
			f(w, r, k)
			return
		}
		sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
		f(sw, r, k)
		h.opts.Observe(string(k), r.Method, sw.status)
	}
}

// statusWriter remembers the status a handler wrote.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	w.status = code
	w.ResponseWriter.WriteHeader(code)
}

// Counts returns the live WHIP and WHEP sessions.
func (h *Handler) Counts() (whip, whep int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, s := range h.sessions {
		if s.kind == kindWHIP {
			whip++
		} else {
			whep++
		}
	}
	return whip, whep
}

// Sessions is the number of live WHIP and WHEP sessions.
func (h *Handler) Sessions() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.sessions)
}

// Close ends every session (the rooms' shutdown ends them too).
func (h *Handler) Close() {
	h.mu.Lock()
	all := make([]*session, 0, len(h.sessions))
	for _, s := range h.sessions {
		all = append(all, s)
	}
	h.mu.Unlock()
	for _, s := range all {
		s.end()
	}
}

type kind string

const (
	kindWHIP kind = "whip"
	kindWHEP kind = "whep"
)

// httpError is a failed request: its status and a message for the client.
type httpError struct {
	status int
	msg    string
}

func (e *httpError) Error() string { return e.msg }

func fail(status int, msg string) *httpError { return &httpError{status: status, msg: msg} }

// writeError answers with a plain-text message (RFC 9725 leaves the body
// free; a person reading curl's output wants words).
func writeError(w http.ResponseWriter, e *httpError) {
	if e.status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="starling"`)
	}
	if e.status == http.StatusTooManyRequests || e.status == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", "2")
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(e.status)
	_, _ = io.WriteString(w, e.msg+"\n")
}

// fromProtocol turns a room or auth error into its HTTP status. joining:
// a "too large" error is the room or the node being full (503), not the
// request.
func (h *Handler) fromProtocol(err error, joining bool) *httpError {
	var pe *protocol.Error
	if !errors.As(err, &pe) {
		h.log.Warn("unexpected error", "err", err)
		return fail(http.StatusInternalServerError, "internal error")
	}
	switch pe.Code {
	case protocol.CodeUnauthorized, protocol.CodeForbidden, protocol.CodeNotFound,
		protocol.CodeConflict, protocol.CodeRateLimited, protocol.CodeUnavailable:
		return fail(pe.Code, pe.Message) // 503 (draining, a store electing a leader) with Retry-After
	case protocol.CodeTooLarge:
		if joining {
			return fail(http.StatusServiceUnavailable, pe.Message)
		}
		return fail(http.StatusBadRequest, pe.Message)
	case protocol.CodeInternal:
		if h.opts.Rooms.Draining() {
			return fail(http.StatusServiceUnavailable, "server is shutting down")
		}
		return fail(http.StatusInternalServerError, pe.Message)
	}
	return fail(http.StatusBadRequest, strings.TrimPrefix(pe.Message, "invalid params: "))
}

// cors answers the browser's cross-origin rules; false (after writing 403)
// when the origin is not allowed.
func (h *Handler) cors(w http.ResponseWriter, r *http.Request, methods string) bool {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true
	}
	if h.opts.CheckOrigin != nil && !h.opts.CheckOrigin(r) {
		writeError(w, fail(http.StatusForbidden, "origin "+origin+" is not allowed: add it to http.allowed_origins"))
		return false
	}
	hd := w.Header()
	hd.Set("Access-Control-Allow-Origin", origin)
	hd.Add("Vary", "Origin")
	hd.Set("Access-Control-Expose-Headers", "Location, ETag, Link, Accept-Patch, Accept-Post")
	if r.Method == http.MethodOptions {
		hd.Set("Access-Control-Allow-Methods", methods)
		hd.Set("Access-Control-Allow-Headers", "Authorization, Content-Type, If-Match")
		hd.Set("Access-Control-Max-Age", "600")
	}
	return true
}

// bearer returns the request's bearer token ("" if none).
func bearer(r *http.Request) string {
	a := r.Header.Get("Authorization")
	if len(a) > 7 && strings.EqualFold(a[:7], "bearer ") {
		return strings.TrimSpace(a[7:])
	}
	return ""
}

// unauthorized is a token's 401 in HTTP's words: the token checker's
// message tells a WebSocket client to "join with a token".
func unauthorized(err *protocol.Error) *httpError {
	return fail(http.StatusUnauthorized, strings.Replace(err.Message, `join with a "token"`, "send Authorization: Bearer <token>", 1))
}

// authorize checks the bearer token for a new session in roomName: the
// identity and permissions it grants (zero values on an open server).
func (h *Handler) authorize(r *http.Request, roomName string, k kind) (identity string, perms *room.Permissions, e *httpError) {
	if !h.opts.Auth.Enabled() {
		return "", nil, nil
	}
	claims, err := h.opts.Auth.Verify(bearer(r))
	if err != nil {
		return "", nil, unauthorized(err)
	}
	if err := claims.CanJoin(roomName); err != nil {
		return "", nil, fail(http.StatusForbidden, err.Message)
	}
	g := claims.Grants
	switch {
	case k == kindWHIP && !g.Publish():
		return "", nil, fail(http.StatusForbidden, "token lacks the publish grant that WHIP needs")
	case k == kindWHEP && !g.Subscribe():
		return "", nil, fail(http.StatusForbidden, "token lacks the subscribe grant that WHEP needs")
	}
	return claims.Identity(), &room.Permissions{CanPublish: g.Publish(), CanSubscribe: g.Subscribe()}, nil
}

// readBody checks the content type and reads a body of at most maxSDP bytes.
func readBody(w http.ResponseWriter, r *http.Request, want string) (string, *httpError) {
	ct, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || !strings.EqualFold(ct, want) {
		got := r.Header.Get("Content-Type")
		if got == "" {
			got = "none"
		}
		return "", fail(http.StatusUnsupportedMediaType, "Content-Type must be "+want+", not "+got)
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxSDP))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return "", fail(http.StatusRequestEntityTooLarge, "body is larger than 1 MiB")
		}
		return "", fail(http.StatusBadRequest, "cannot read the body")
	}
	if len(strings.TrimSpace(string(body))) == 0 {
		return "", fail(http.StatusBadRequest, "the body is empty: send the SDP")
	}
	if !utf8.Valid(body) {
		return "", fail(http.StatusBadRequest, "the body is not UTF-8 text")
	}
	return string(body), nil
}

// roomName validates the {room} path value as `join` does.
func roomName(r *http.Request) (string, *httpError) {
	name := protocol.RoomName(r.PathValue("room"))
	switch {
	case name == "":
		return "", fail(http.StatusBadRequest, "room name is empty")
	case utf8.RuneCountInString(name) > maxRoomName:
		return "", fail(http.StatusBadRequest, "room name is longer than 128 characters")
	case strings.IndexFunc(name, unicode.IsControl) >= 0 || strings.Contains(name, "/"):
		return "", fail(http.StatusBadRequest, `room name must not contain control characters or "/"`)
	}
	return name, nil
}

// queryName is the ?name= a POST gives, "" for none: at most 256
// characters, as join's name, and no control characters (a URL can carry
// them, %0A and the like). A name that broke these was silently replaced by
// the identity or "WHIP publisher" before: the client never learned why its
// name did not show.
func queryName(r *http.Request) (string, *httpError) {
	n := strings.TrimSpace(r.URL.Query().Get("name"))
	switch {
	case utf8.RuneCountInString(n) > maxName:
		return "", fail(http.StatusBadRequest, "?name= is longer than 256 characters")
	case strings.IndexFunc(n, unicode.IsControl) >= 0:
		return "", fail(http.StatusBadRequest, "?name= must not contain control characters")
	}
	return n, nil
}

// displayName is the participant's name: ?name=, else the identity, else
// what it is.
func displayName(name, identity string, k kind) string {
	if name != "" {
		return name
	}
	if identity != "" {
		return identity
	}
	if k == kindWHIP {
		return "WHIP publisher"
	}
	return "WHEP viewer"
}

func newSessionID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// location is a session's resource path.
func location(roomName string, k kind, id string) string {
	return "/v1/rooms/" + url.PathEscape(roomName) + "/" + string(k) + "/" + id
}

// parseOffer rejects SDP that does not parse, with pion's words.
func parseOffer(offer string) ([]sfu.OfferedTrack, *httpError) {
	tracks, err := sfu.ParseOffer(offer)
	if err != nil {
		return nil, offerError(err)
	}
	return tracks, nil
}

// offerError is the 400 for an offer ParseOffer refused: one it could not
// read, or one that parses but that Starling cannot answer (no rtcp-mux,
// sections not bundled), said as such.
func offerError(err error) *httpError {
	if sfu.Refused(err) {
		return fail(http.StatusBadRequest, "the SDP offer: "+err.Error())
	}
	return fail(http.StatusBadRequest, "the SDP offer does not parse: "+err.Error())
}
