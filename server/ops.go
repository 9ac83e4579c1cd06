package server

import (
	"net/http"

	"github.com/starling-rtc/starling/admin"
	"github.com/starling-rtc/starling/metrics"
	"github.com/starling-rtc/starling/signaling"
)

// Metrics is the node's Prometheus registry.
func (s *Server) Metrics() *metrics.Metrics { return s.metrics }

// signalingOptions configure the WebSocket transport.
func (s *Server) signalingOptions() signaling.Options {
	return signaling.Options{Logger: s.log, Observe: s.metrics.ObserveSignaling}
}

// operatorRoutes adds /metrics, /readyz and the admin API (/v1/rooms...).
func (s *Server) operatorRoutes(mux *http.ServeMux) {
	admin.New(admin.Options{
		Rooms: s.rooms, Auth: s.auth, MaxDataMessage: s.cfg.Limits.MaxDataMessage, Logger: s.log,
	}).Register(mux)
	mux.Handle("GET /metrics", s.metrics.Handler())
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if s.rooms.Draining() {
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte(`{"status":"draining"}` + "\n"))
			return
		}
		_, _ = w.Write([]byte(`{"status":"ready"}` + "\n"))
	})
}
