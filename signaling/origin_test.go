package signaling

import (
	"net/http/httptest"
	"testing"
)

func TestOriginChecker(t *testing.T) {
	check := OriginChecker([]string{"https://app.example.com", "http://localhost:3000/"})
	tests := []struct {
		origin, host string
		want         bool
	}{
		{"", "sfu.example.com", true},                          // native client
		{"https://sfu.example.com", "sfu.example.com", true},   // the server's own page
		{"http://127.0.0.1:7900", "127.0.0.1:7900", true},      // same, on localhost
		{"https://APP.example.com", "sfu.example.com", true},   // allowed, any case
		{"http://localhost:3000", "sfu.example.com", true},     // allowed, listed with a slash
		{"https://evil.example.com", "sfu.example.com", false}, // not allowed
		{"https://app.example.com:8443", "sfu.example.com", false},
		{"null", "sfu.example.com", false},
	}
	for _, tc := range tests {
		r := httptest.NewRequest("GET", "http://"+tc.host+"/v1/rtc", nil)
		r.Host = tc.host
		if tc.origin != "" {
			r.Header.Set("Origin", tc.origin)
		}
		if got := check(r); got != tc.want {
			t.Errorf("origin %q host %q: %v, want %v", tc.origin, tc.host, got, tc.want)
		}
	}
	r := httptest.NewRequest("GET", "/v1/rtc", nil)
	r.Header.Set("Origin", "https://anything.example")
	if !OriginChecker([]string{"*"})(r) {
		t.Error(`"*" does not allow every origin`)
	}
}
