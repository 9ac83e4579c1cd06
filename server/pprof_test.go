package server_test

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/starling-rtc/starling/config"
)

// TestPprof: off by default; with http.pprof on, loopback clients get
// profiles.
func TestPprof(t *testing.T) {
	parallel(t)
	get := func(url string) (int, string) {
		t.Helper()
		resp, err := http.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	off := startServer(t, nil)
	if code, body := get(off.BaseURL() + "/debug/pprof/heap?debug=1"); code == http.StatusOK && strings.Contains(body, "heap profile") {
		t.Fatal("profiles served without http.pprof")
	}
	on := startServer(t, func(c *config.Config) { c.HTTP.Pprof = true })
	if code, body := get(on.BaseURL() + "/debug/pprof/heap?debug=1"); code != http.StatusOK || !strings.Contains(body, "heap profile") {
		t.Fatalf("with http.pprof: %d %.80q", code, body)
	}
	if code, body := get(on.BaseURL() + "/debug/pprof/goroutine?debug=1"); code != http.StatusOK || !strings.Contains(body, "goroutine profile") {
		t.Fatalf("goroutine profile: %d %.80q", code, body)
	}
}
