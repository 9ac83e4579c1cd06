// Package loopback tells requests from this machine apart from the others:
// the server serves some endpoints (the profiler, recording files without a
// key) to loopback clients only.
//
// It is a package of its own, with its test, so that the server package
// has no test file inside the package: one such file makes go test compile
// the server package a second time, and every package of the test binary
// that imports it (internal/testutil/testnode) too.
package loopback

import (
	"net"
	"net/http"
)

// Client reports whether remote (a request's RemoteAddr, host:port or a
// bare host) is a loopback address.
func Client(remote string) bool {
	host, _, err := net.SplitHostPort(remote)
	if err != nil {
		host = remote
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Only serves h to loopback clients and answers 403 with msg to the others.
func Only(msg string, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !Client(r.RemoteAddr) {
			http.Error(w, msg, http.StatusForbidden)
			return
		}
		h.ServeHTTP(w, r)
	})
}
