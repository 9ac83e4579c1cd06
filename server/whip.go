package server

import (
	"net/http"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/starling-rtc/starling/signaling"
	"github.com/starling-rtc/starling/signaling/whip"
)

// setupWHIP serves WHIP and WHEP (docs/whip.md) with the node's tokens,
// per-IP join rate and allowed origins, and exports their metrics.
func (s *Server) setupWHIP(mux *http.ServeMux) {
	requests := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "starling", Subsystem: "whip", Name: "requests_total",
		Help: "WHIP and WHEP HTTP requests, by endpoint kind (whip, whep), method and response status.",
	}, []string{"kind", "method", "status"})
	h := whip.New(whip.Options{
		Rooms: s.rooms, Auth: s.auth, Limiter: s.joinLimiter(),
		CheckOrigin: signaling.OriginChecker(s.cfg.HTTP.AllowedOrigins), Logger: s.log,
		InCluster: s.roomInCluster, // see cluster.go
		Observe: func(kind, method string, status int) {
			requests.WithLabelValues(kind, method, strconv.Itoa(status)).Inc()
		},
	})
	sessions := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: "starling", Subsystem: "whip", Name: "sessions",
		Help: "Live WHIP (publishing) and WHEP (watching) sessions.",
	}, []string{"kind"})
	s.metrics.Registry().MustRegister(requests, prometheus.CollectorFunc(func(ch chan<- prometheus.Metric) {
		pub, view := h.Counts()
		sessions.WithLabelValues("whip").Set(float64(pub))
		sessions.WithLabelValues("whep").Set(float64(view))
		sessions.Collect(ch)
	}))
	h.Register(mux)
	s.whip = h
}

// WHIP is the node's WHIP and WHEP handler.
func (s *Server) WHIP() *whip.Handler { return s.whip }
