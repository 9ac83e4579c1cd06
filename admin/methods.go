package admin

import (
	"fmt"
	"net/http"

	"github.com/starling-rtc/starling/protocol"
)

// apiMethods lists the API's paths with the methods each serves (HEAD comes
// with GET), for the 405 answer of any other method.
var apiMethods = []struct{ path, allow string }{
	{"/v1/rooms", "GET, HEAD"},
	{"/v1/nodes", "GET, HEAD"},
	{"/v1/rooms/{room}", "GET, HEAD, DELETE"},
	{"/v1/rooms/{room}/data", "POST"},
	{"/v1/rooms/{room}/participants/{id}", "GET, HEAD, DELETE, PATCH"},
	{"/v1/rooms/{room}/participants/{id}/mute", "POST"},
	{"/v1/rooms/{room}/participants/{id}/mix", "POST"},
}

// registerMethods answers another method on an API path with 405 and
// Allow, in JSON like every error of the API (docs/admin-api.md): the
// mux's own answer was plain text. The patterns have no method, so the
// routes with one take precedence.
func registerMethods(mux *http.ServeMux) {
	for _, m := range apiMethods {
		allow := m.allow
		mux.HandleFunc(m.path, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Allow", allow)
			writeJSON(w, http.StatusMethodNotAllowed, &protocol.Error{Code: http.StatusMethodNotAllowed,
				Message: fmt.Sprintf("method %s is not allowed on %s: use %s", r.Method, r.URL.Path, allow)})
		})
	}
}

// roomPath hands h the {room} path value as join names the room
// (protocol.RoomName): `/v1/rooms/%20standup` is the room a join of
// " standup" made, and the token check compares that name with the
// token's (equally normalised) grant.
func roomPath(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		r.SetPathValue("room", protocol.RoomName(r.PathValue("room")))
		h(w, r)
	}
}
