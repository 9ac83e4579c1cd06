package loopback

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

// TestOnly: the profiler goes to clients on this machine and nobody else
// (moved from the server package, which serves it through Only).
func TestOnly(t *testing.T) {
	h := Only("loopback only", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) }))
	for addr, want := range map[string]int{
		"127.0.0.1:5000":          http.StatusOK,
		"[::1]:5000":              http.StatusOK,
		"[::ffff:127.0.0.1]:5000": http.StatusOK,
		"203.0.113.5:5000":        http.StatusForbidden,
		"[2001:db8::1]:5000":      http.StatusForbidden,
		"garbage":                 http.StatusForbidden,
	} {
		r := httptest.NewRequest(http.MethodGet, "/debug/pprof/heap", nil)
		r.RemoteAddr = addr
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != want {
			t.Errorf("client %s: %d, want %d", addr, w.Code, want)
		}
	}
}
