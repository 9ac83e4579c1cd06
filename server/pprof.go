package server

import (
	"net/http"
	"net/http/pprof"

	"github.com/starling-rtc/starling/internal/loopback"
)

// registerPprof serves Go's profiler at /debug/pprof/ (http.pprof: off by
// default). Profiles show the server's internals and a CPU profile costs
// CPU while it runs, so only loopback clients get them: profile on the
// machine, or through an SSH tunnel.
func registerPprof(mux *http.ServeMux) {
	mux.Handle("/debug/pprof/", loopbackOnly(http.HandlerFunc(pprof.Index)))
	mux.Handle("/debug/pprof/cmdline", loopbackOnly(http.HandlerFunc(pprof.Cmdline)))
	mux.Handle("/debug/pprof/profile", loopbackOnly(http.HandlerFunc(pprof.Profile)))
	mux.Handle("/debug/pprof/symbol", loopbackOnly(http.HandlerFunc(pprof.Symbol)))
	mux.Handle("/debug/pprof/trace", loopbackOnly(http.HandlerFunc(pprof.Trace)))
}

// loopbackOnly answers 403 to clients that are not on this machine.
func loopbackOnly(h http.Handler) http.Handler {
	return loopback.Only("profiling is served to loopback clients only", h)
}
