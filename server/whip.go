package server

import (
	"net/http"

	"github.com/starling-rtc/starling/signaling"
	"github.com/starling-rtc/starling/signaling/whip"
)

// setupWHIP serves WHIP and WHEP (docs/whip.md) with the node's tokens,
// per-IP join rate and allowed origins.
func (s *Server) setupWHIP(mux *http.ServeMux) {
	h := whip.New(whip.Options{
		Rooms: s.rooms, Auth: s.auth, Limiter: s.joinLimiter(),
		CheckOrigin: signaling.OriginChecker(s.cfg.HTTP.AllowedOrigins), Logger: s.log,
	})
	h.Register(mux)
	s.whip = h
}

// WHIP is the node's WHIP and WHEP handler.
func (s *Server) WHIP() *whip.Handler { return s.whip }
