package recorder

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"slices"
	"strings"

	"github.com/starling-rtc/starling/protocol"
)

// Routes of the recording control API. The server mounts them behind the
// admin API's authentication (an admin token, or one with the record
// grant for the room); see docs/recording.md.
//
//	POST   /v1/rooms/{room}/recordings        start: body {} = the whole room,
//	                                          {"track_id": "TR_..."} = one track
//	GET    /v1/rooms/{room}/recordings        list this room's recordings
//	DELETE /v1/rooms/{room}/recordings        stop every running recording of the room
//	GET    /v1/rooms/{room}/recordings/{id}   one recording
//	DELETE /v1/rooms/{room}/recordings/{id}   stop one recording
const (
	RoutePrefix = "/v1/rooms/{room}/recordings"
	RouteOne    = "/v1/rooms/{room}/recordings/{id}"
)

// Register adds the recording routes to mux, each wrapped by wrap (the
// admin authentication middleware; nil = none, for tests only).
func (m *Manager) Register(mux *http.ServeMux, wrap func(http.Handler) http.Handler) {
	if wrap == nil {
		wrap = func(h http.Handler) http.Handler { return h }
	}
	// The {room} path value is normalised before wrap sees it, so the
	// authentication compares the name join would have made of it
	// (protocol.RoomName) with the token's room grant.
	route := func(h http.HandlerFunc) http.Handler { return roomPath(wrap(h)) }
	mux.Handle("POST "+RoutePrefix, route(m.httpStart))
	mux.Handle("GET "+RoutePrefix, route(m.httpList))
	mux.Handle("DELETE "+RoutePrefix, route(m.httpStopRoom))
	mux.Handle("GET "+RouteOne, route(m.httpGet))
	mux.Handle("DELETE "+RouteOne, route(m.httpStop))
	// Another method gets 405 with Allow, in JSON like the routes' other
	// errors (the mux's own answer is plain text).
	for path, allow := range map[string]string{RoutePrefix: "GET, HEAD, POST, DELETE", RouteOne: "GET, HEAD, DELETE"} {
		mux.HandleFunc(path, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Allow", allow)
			writeJSON(w, http.StatusMethodNotAllowed, errorBody{Error: "method " + r.Method + " is not allowed: use " + allow})
		})
	}
}

// maxStartBody bounds a start request's body: {"track_id": ...} is tiny.
const maxStartBody = 4096

// roomPath hands h the {room} path value as join names the room.
func roomPath(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.SetPathValue("room", protocol.RoomName(r.PathValue("room")))
		h.ServeHTTP(w, r)
	})
}

// Handler serves the recording routes without authentication of its own.
func (m *Manager) Handler() http.Handler {
	mux := http.NewServeMux()
	m.Register(mux, nil)
	return mux
}

// StartRequest is the body of POST /v1/rooms/{room}/recordings.
type StartRequest struct {
	TrackID string `json:"track_id,omitempty"`
	// Mix adds the room's live audio mix as mix.webm to a room recording
	// (the room mixes while the recording lasts; docs/mixing.md).
	Mix bool `json:"mix,omitempty"`
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

type errorBody struct {
	Error     string `json:"error"`
	Recording *Info  `json:"recording,omitempty"`
}

func httpError(w http.ResponseWriter, err error, existing *Info) {
	code := http.StatusInternalServerError
	switch {
	case errors.Is(err, ErrRoomNotFound), errors.Is(err, ErrTrackNotFound), errors.Is(err, ErrNotFound):
		code = http.StatusNotFound
	case errors.Is(err, ErrAlreadyRecording):
		code = http.StatusConflict
	case errors.Is(err, ErrClosed), errors.Is(err, ErrCutOff):
		code = http.StatusServiceUnavailable
	case errors.Is(err, ErrInvalidRecordName):
		code = http.StatusBadRequest
	}
	writeJSON(w, code, errorBody{Error: err.Error(), Recording: existing})
}

func (m *Manager) httpStart(w http.ResponseWriter, r *http.Request) {
	var req StartRequest
	// One small JSON object. A longer body was cut at 4 KiB and refused
	// as "unexpected EOF", and what followed the object was ignored
	// (`{} {"track_id": ...}` recorded the whole room).
	body, err := io.ReadAll(io.LimitReader(r.Body, maxStartBody+1))
	if err != nil {
		writeJSON(w, http.StatusBadRequest, errorBody{Error: "reading body: " + err.Error()})
		return
	}
	if len(body) > maxStartBody {
		writeJSON(w, http.StatusRequestEntityTooLarge, errorBody{Error: fmt.Sprintf("the body is larger than %d bytes", maxStartBody)})
		return
	}
	if len(strings.TrimSpace(string(body))) > 0 {
		dec := json.NewDecoder(strings.NewReader(string(body)))
		dec.DisallowUnknownFields()
		err := dec.Decode(&req)
		if err == nil && dec.More() {
			err = errors.New("one JSON object per request")
		}
		if err == nil && req.TrackID != "" && req.Mix {
			// The mix goes with a room recording; with track_id it was
			// dropped without a word (a track recording started).
			err = errors.New(`"mix" is for a room recording, not with "track_id"`)
		}
		if err != nil {
			writeJSON(w, http.StatusBadRequest, errorBody{Error: `invalid body: want {}, {"mix": true} or {"track_id": "..."}: ` + bodyError(err)})
			return
		}
	}
	room := r.PathValue("room")
	c := m.peers(r) // cluster.go; a room recording claims the room cluster-wide (claim.go)
	var info Info
	if req.TrackID != "" {
		info, err = m.StartTrack(room, req.TrackID)
	} else {
		info, err = m.start(room, "", false, req.Mix)
	}
	if c != nil && (errors.Is(err, ErrRoomNotFound) || errors.Is(err, ErrTrackNotFound)) {
		// No part of the room (or not that track) here: a node that has one records.
		nodes, lerr := c.RoomNodes(room)
		var te *trackElsewhere
		if errors.As(err, &te) {
			// The track's own node first: only it records the track.
			nodes = append([]string{te.node}, slices.DeleteFunc(nodes, func(n string) bool { return n == te.node })...)
		}
		var notFound *ForwardReply
		for _, node := range nodes {
			rep, ferr := c.Forward(node, forwardOf(r, body))
			if ferr == nil && rep.Status != http.StatusNotFound {
				writeRaw(w, rep)
				return
			}
			if ferr == nil {
				notFound = &rep
			}
		}
		if notFound != nil && (errors.Is(err, ErrRoomNotFound) || te != nil) {
			// The room is on another node, which says what it lacks
			// (the track): not "room not found" from this node.
			writeRaw(w, *notFound)
			return
		}
		if te != nil {
			// The track's node did not answer: it may be busy or cut off.
			w.Header().Set("Retry-After", "2")
			writeJSON(w, http.StatusServiceUnavailable, errorBody{Error: te.Error() + ", which did not answer: try again"})
			return
		}
		if lerr != nil {
			// The room state does not answer: the room may exist on
			// another node (it answered 404 before).
			w.Header().Set("Retry-After", "2")
			writeJSON(w, http.StatusServiceUnavailable, errorBody{Error: lerr.Error()})
			return
		}
	}
	if err != nil {
		var existing *Info
		if errors.Is(err, ErrAlreadyRecording) {
			existing = &info
		}
		httpError(w, err, existing)
		return
	}
	writeJSON(w, http.StatusCreated, info)
}

func (m *Manager) httpList(w http.ResponseWriter, r *http.Request) {
	list := m.List(r.PathValue("room"))
	if c := m.peers(r); c != nil {
		list = gather(c, r.PathValue("room"), forwardOf(r, nil), list) // every node's (cluster.go)
	}
	writeJSON(w, http.StatusOK, struct {
		Recordings []Info `json:"recordings"`
	}{list})
}

func (m *Manager) httpStopRoom(w http.ResponseWriter, r *http.Request) {
	stopped := m.StopRoom(r.PathValue("room"))
	if c := m.peers(r); c != nil {
		for _, rep := range forwardAll(c, nodesFor(c, r.PathValue("room")), forwardOf(r, nil)) {
			var body struct {
				Recordings []Info `json:"recordings"`
			}
			if rep.Status == http.StatusOK && json.Unmarshal(rep.Body, &body) == nil {
				stopped = append(stopped, body.Recordings...)
			}
		}
	}
	if len(stopped) == 0 {
		httpError(w, ErrNotFound, nil)
		return
	}
	writeJSON(w, http.StatusOK, struct {
		Recordings []Info `json:"recordings"`
	}{stopped})
}

func (m *Manager) lookup(w http.ResponseWriter, r *http.Request) (Info, bool) {
	info, ok := m.Get(r.PathValue("id"))
	if !ok || info.Room != r.PathValue("room") {
		// Another node's recording answers from there (cluster.go).
		if c := m.peers(r); c != nil {
			answered, silent := forwardFirst(w, c, r.PathValue("room"), forwardOf(r, nil))
			if answered {
				return Info{}, false
			}
			// The recording may be on a node that did not answer (a
			// busy node, a node just cut off): not 404, which says it
			// does not exist, but 503, try again.
			if len(silent) > 0 {
				w.Header().Set("Retry-After", "1")
				writeJSON(w, http.StatusServiceUnavailable, errorBody{Error: fmt.Sprintf("recording not found on this node, and node(s) %s did not answer: try again", strings.Join(silent, ", "))})
				return Info{}, false
			}
		}
		httpError(w, ErrNotFound, nil)
		return Info{}, false
	}
	return info, true
}

func (m *Manager) httpGet(w http.ResponseWriter, r *http.Request) {
	if info, ok := m.lookup(w, r); ok {
		writeJSON(w, http.StatusOK, info)
	}
}

func (m *Manager) httpStop(w http.ResponseWriter, r *http.Request) {
	if _, ok := m.lookup(w, r); !ok {
		return
	}
	info, err := m.Stop(r.PathValue("id"))
	if err != nil {
		httpError(w, err, nil)
		return
	}
	writeJSON(w, http.StatusOK, info)
}

// bodyError says what is wrong with a start body in the API's terms:
// encoding/json names Go's struct fields and types ("cannot unmarshal
// string into Go struct field StartRequest.mix of type bool").
func bodyError(err error) string {
	var typeErr *json.UnmarshalTypeError
	if errors.As(err, &typeErr) {
		want := "a string"
		if typeErr.Type.Kind() == reflect.Bool {
			want = "a boolean"
		}
		return fmt.Sprintf("field %q must be %s, not %s", typeErr.Field, want, typeErr.Value)
	}
	return strings.TrimPrefix(err.Error(), "json: ")
}
