package server

import (
	"net/http"
	"sync"

	"github.com/starling-rtc/starling/admin"
	"github.com/starling-rtc/starling/config"
	"github.com/starling-rtc/starling/metrics"
	"github.com/starling-rtc/starling/room"
	"github.com/starling-rtc/starling/signaling"
)

// Metrics is the node's Prometheus registry.
func (s *Server) Metrics() *metrics.Metrics { return s.metrics }

// extras is the state issue #7 adds to a Server.
type extras struct {
	joinOnce    sync.Once
	joinLimiter *signaling.IPLimiter
}

// signalingOptions configure the WebSocket transport.
func (s *Server) signalingOptions() signaling.Options {
	l := s.cfg.Limits
	return signaling.Options{
		Logger: s.log, Observe: s.metrics.ObserveSignaling,
		MaxFrame: l.MaxFrame, ReadTimeout: l.IdleTimeout.Std(),
		RateLimit: l.SignalingRate, RateBurst: l.SignalingBurst,
	}
}

// joinLimiter is the node's per-IP join rate limiter (nil = unlimited).
func (s *Server) joinLimiter() *signaling.IPLimiter {
	s.ext.joinOnce.Do(func() {
		s.ext.joinLimiter = signaling.NewIPLimiter(s.cfg.Limits.JoinRate, s.cfg.Limits.JoinBurst)
	})
	return s.ext.joinLimiter
}

func roomLimits(l config.Limits) room.Limits {
	return room.Limits{
		MaxRooms: l.MaxRooms, MaxParticipants: l.MaxParticipants, MaxTracks: l.MaxTracks,
		MaxSubscriptions: l.MaxSubscriptions, MaxDataMessage: l.MaxDataMessage,
	}
}

// operatorRoutes applies the room limits and adds /metrics, /readyz and the
// admin API (/v1/rooms...).
func (s *Server) operatorRoutes(mux *http.ServeMux) {
	s.rooms.SetLimits(roomLimits(s.cfg.Limits)) // before anyone can join
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
