package recorder_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/starling-rtc/starling/recorder"
)

func do(t *testing.T, method, url, body string) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out
}

// POST starts (room or track), GET lists, DELETE stops; errors map to
// 404/409/400 with a JSON error.
func TestHTTPControl(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	rec, err := recorder.NewManager(srv.Rooms(), recorder.Config{Dir: t.TempDir(), Logger: testLogger()})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	var wrapped int
	rec.Register(mux, func(h http.Handler) http.Handler {
		wrapped++
		return h
	})
	if wrapped != 5 {
		t.Fatalf("%d routes wrapped by the auth middleware, want 5", wrapped)
	}
	hs := httptest.NewServer(mux)
	defer hs.Close()
	base := hs.URL + "/v1/rooms/"

	if code, body := do(t, "POST", base+"nobody/recordings", ""); code != 404 || body["error"] == nil {
		t.Fatalf("start in a missing room: %d %v", code, body)
	}
	c := join(t, srv, "http-room", "alice", nil)
	p := publishFiles(t, c, "alice")
	p.prime(t, func() bool { return srv.Rooms().Room("http-room") != nil })
	p.prime(t, func() bool { return len(srv.Rooms().Room("http-room").ObservedTracks()) == 2 })

	code, body := do(t, "POST", base+"http-room/recordings", "{}")
	if code != 201 || body["status"] != "recording" || body["kind"] != "room" {
		t.Fatalf("start: %d %v", code, body)
	}
	id := body["id"].(string)
	if code, body := do(t, "POST", base+"http-room/recordings", ""); code != 409 || body["recording"] == nil {
		t.Fatalf("second start: %d %v", code, body)
	}
	if code, _ := do(t, "POST", base+"http-room/recordings", `{"track":"x"}`); code != 400 {
		t.Fatalf("bad body: %d", code)
	}
	if code, _ := do(t, "POST", base+"http-room/recordings", `{"track_id":"TR_nope"}`); code != 404 {
		t.Fatalf("unknown track: %d", code)
	}
	trackID := srv.Rooms().Room("http-room").ObservedTracks()[0].Track.ID
	code, body = do(t, "POST", base+"http-room/recordings", `{"track_id":"`+trackID+`"}`)
	if code != 201 || body["kind"] != "track" || body["track_id"] != trackID {
		t.Fatalf("track start: %d %v", code, body)
	}
	trackRec := body["id"].(string)

	code, body = do(t, "GET", base+"http-room/recordings", "")
	if list, _ := body["recordings"].([]any); code != 200 || len(list) != 2 {
		t.Fatalf("list: %d %v", code, body)
	}
	if code, body := do(t, "GET", base+"http-room/recordings/"+id, ""); code != 200 || body["id"] != id {
		t.Fatalf("get: %d %v", code, body)
	}
	if code, _ := do(t, "GET", base+"other/recordings/"+id, ""); code != 404 {
		t.Fatalf("get under another room: %d", code)
	}
	if code, body := do(t, "DELETE", base+"http-room/recordings/"+trackRec, ""); code != 200 || body["status"] != "finished" {
		t.Fatalf("stop one: %d %v", code, body)
	}
	code, body = do(t, "DELETE", base+"http-room/recordings", "")
	if list, _ := body["recordings"].([]any); code != 200 || len(list) != 1 || list[0].(map[string]any)["id"] != id {
		t.Fatalf("stop room: %d %v", code, body)
	}
	if code, _ := do(t, "DELETE", base+"http-room/recordings", ""); code != 404 {
		t.Fatalf("stop with nothing running: %d", code)
	}
}
