package server

import (
	"github.com/starling-rtc/starling/auth"
	"github.com/starling-rtc/starling/signaling"
)

// Auth is the node's token verifier (no keys = open server).
func (s *Server) Auth() *auth.Verifier { return s.auth }

// sessionOptions are what every signaling session enforces.
func (s *Server) sessionOptions() signaling.SessionOptions {
	return signaling.SessionOptions{Auth: s.auth, JoinLimiter: s.joinLimiter()}
}

// logSecurity says at start whether the node checks tokens.
func (s *Server) logSecurity() {
	if s.auth.Enabled() {
		s.log.Info("access tokens required", "api_keys", s.auth.Keys())
		return
	}
	if s.cfg.InsecureOpen {
		s.log.Warn("running OPEN with --insecure-open: no API keys, anyone who reaches " + s.Addr() +
			" can join any room and use the admin API from loopback")
		return
	}
	s.log.Warn("running OPEN: no API keys configured, so join needs no token; fine on localhost, " +
		"configure keys: or $" + auth.EnvKeys + " before exposing the server")
}
