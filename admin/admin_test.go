package admin

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/starling-rtc/starling/auth"
	"github.com/starling-rtc/starling/room"
)

func TestIsLoopback(t *testing.T) {
	for addr, want := range map[string]bool{
		"127.0.0.1:5000": true, "[::1]:5000": true, "127.9.9.9:1": true, "[::ffff:127.0.0.1]:1": true,
		"10.0.0.1:5000": false, "[2001:db8::1]:1": false, "garbage": false, "": false,
	} {
		if got := isLoopback(addr); got != want {
			t.Errorf("isLoopback(%q) = %v, want %v", addr, got, want)
		}
	}
}

// TestOpenServerRefusesRemote: without keys a non-loopback client is refused.
func TestOpenServerRefusesRemote(t *testing.T) {
	mux := http.NewServeMux()
	New(Options{Rooms: room.NewManager(room.Config{}), Auth: auth.NewVerifier(nil)}).Register(mux)
	for remote, want := range map[string]int{"192.0.2.7:4444": 403, "127.0.0.1:4444": 200} {
		req := httptest.NewRequest("GET", "/v1/rooms", nil)
		req.RemoteAddr = remote
		w := httptest.NewRecorder()
		mux.ServeHTTP(w, req)
		if w.Code != want || !strings.HasPrefix(w.Header().Get("Content-Type"), "application/json") {
			t.Errorf("%s: %d %s, want %d", remote, w.Code, w.Body, want)
		}
	}
}

func TestBearer(t *testing.T) {
	for h, want := range map[string]string{"Bearer abc": "abc", "bearer  abc ": "abc", "Basic abc": "", "Bearer": "", "": ""} {
		r := httptest.NewRequest("GET", "/", nil)
		if h != "" {
			r.Header.Set("Authorization", h)
		}
		got, ok := bearer(r)
		if got != want || ok != (want != "") {
			t.Errorf("bearer(%q) = %q %v, want %q", h, got, ok, want)
		}
	}
}
