package server_test

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/starling-rtc/starling/config"
)

// TestOutsiderAPIWrongMethod: docs/admin-api.md says the API "speaks JSON
// both ways and reports errors as {"code": ..., "message": ...}", and
// docs/recording.md that the recording routes' errors are {"error": ...}.
// A method a path does not serve (PUT on a room, GET on .../mute) got
// Go's plain-text "method not allowed". It gets 405, Allow, and the JSON
// error of its API.
func TestOutsiderAPIWrongMethod(t *testing.T) {
	parallel(t)
	srv := startServer(t, func(c *config.Config) { c.Recordings.Dir = t.TempDir() })
	for _, c := range []struct {
		method, path, allow, field string
	}{
		{http.MethodPut, "/v1/rooms/standup", "DELETE", "message"},
		{http.MethodPost, "/v1/rooms", "GET", "message"},
		{http.MethodDelete, "/v1/nodes", "GET", "message"},
		{http.MethodGet, "/v1/rooms/standup/data", "POST", "message"},
		{http.MethodPost, "/v1/rooms/standup/participants/PA_x", "PATCH", "message"},
		{http.MethodGet, "/v1/rooms/standup/participants/PA_x/mute", "POST", "message"},
		{http.MethodPut, "/v1/rooms/standup/participants/PA_x/mix", "POST", "message"},
		{http.MethodPut, "/v1/rooms/standup/recordings", "POST", "error"},
		{http.MethodPost, "/v1/rooms/standup/recordings/x", "DELETE", "error"},
	} {
		req, _ := http.NewRequest(c.method, "http://"+srv.Addr()+c.path, strings.NewReader("{}"))
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var body map[string]any
		what := c.method + " " + c.path
		if resp.StatusCode != http.StatusMethodNotAllowed {
			t.Errorf("%s: %s %s, want 405", what, resp.Status, b)
			continue
		}
		if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") || json.Unmarshal(b, &body) != nil {
			t.Errorf("%s: a %q body %q, want a JSON error", what, ct, b)
			continue
		}
		if msg, _ := body[c.field].(string); len(msg) < 8 {
			t.Errorf("%s: %s, want %q saying what was wrong", what, b, c.field)
		}
		if c.field == "message" && body["code"] != float64(405) {
			t.Errorf("%s: %s, want code 405", what, b)
		}
		if allow := resp.Header.Get("Allow"); !strings.Contains(allow, c.allow) {
			t.Errorf("%s: Allow %q, want it to list %s", what, allow, c.allow)
		}
	}
}
