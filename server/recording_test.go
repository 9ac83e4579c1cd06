package server_test

import (
	"encoding/json"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/starling-rtc/starling/auth"
	"github.com/starling-rtc/starling/config"
)

// TestRecordingControl: the recording routes are reachable on the server,
// guarded by the record grant, and a room recording started and stopped
// through them leaves a manifest and non-empty media files.
func TestRecordingControl(t *testing.T) {
	parallel(t)
	dir := t.TempDir()
	srv := startServer(t, func(c *config.Config) {
		withKeys(c)
		c.Recordings.Dir = dir
	})
	pub := join(t, srv, "rec", "camera", withToken(token(t, "cam", auth.Grants{Room: "rec"}, time.Hour)))
	publishFake(t, pub)
	url := "http://" + srv.Addr() + "/v1/rooms/rec/recordings"

	call := func(method, url, tok string) (int, map[string]any) {
		t.Helper()
		req, _ := http.NewRequest(method, url, strings.NewReader("{}"))
		if tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		body, _ := io.ReadAll(res.Body)
		var m map[string]any
		_ = json.Unmarshal(body, &m)
		return res.StatusCode, m
	}
	if code, _ := call("POST", url, ""); code != http.StatusUnauthorized {
		t.Fatalf("no token: HTTP %d, want 401", code)
	}
	if code, _ := call("POST", url, token(t, "x", auth.Grants{Room: "rec"}, time.Hour)); code != http.StatusForbidden {
		t.Fatalf("token without the record grant: HTTP %d, want 403", code)
	}
	if code, _ := call("POST", url, token(t, "x", auth.Grants{Room: "other", Record: true}, time.Hour)); code != http.StatusForbidden {
		t.Fatalf("record token for another room: HTTP %d, want 403", code)
	}
	rec := token(t, "recorder", auth.Grants{Room: "rec", Record: true}, time.Hour)
	code, started := call("POST", url, rec)
	if code != http.StatusCreated {
		t.Fatalf("start: HTTP %d %v, want 201", code, started)
	}
	id, _ := started["id"].(string)
	// Record until both tracks' files hold media (a few frames past the
	// headers), however long a busy machine takes to get there.
	waitFor(t, 20*time.Second, "both tracks' files to hold media", func() bool {
		code, info := call("GET", url+"/"+id, rec)
		files, _ := info["files"].([]any)
		if code != http.StatusOK || len(files) != 2 {
			return false
		}
		for _, f := range files {
			if st, err := os.Stat(f.(string)); err != nil || st.Size() < 2048 {
				return false
			}
		}
		return true
	})
	code, stopped := call("DELETE", url+"/"+id, rec)
	if code != http.StatusOK || stopped["status"] != "finished" {
		t.Fatalf("stop: HTTP %d %v, want 200 finished", code, stopped)
	}
	files, _ := stopped["files"].([]any)
	if len(files) != 2 {
		t.Fatalf("recorded %d files, want 2 (audio and video): %v", len(files), stopped)
	}
	for _, f := range files {
		st, err := os.Stat(f.(string))
		if err != nil || st.Size() == 0 {
			t.Fatalf("recorded file %v missing or empty (%v)", f, err)
		}
	}
	if _, err := os.Stat(stopped["manifest"].(string)); err != nil {
		t.Fatalf("manifest: %v", err)
	}
}
