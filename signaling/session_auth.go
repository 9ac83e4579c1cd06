package signaling

import (
	"log/slog"

	"github.com/starling-rtc/starling/auth"
	"github.com/starling-rtc/starling/protocol"
	"github.com/starling-rtc/starling/room"
)

// SessionOptions configure what a Session enforces beyond the protocol.
type SessionOptions struct {
	// Auth checks join tokens; nil, or a verifier without keys, runs open:
	// anyone may join any room and do anything.
	Auth *auth.Verifier
	// JoinLimiter bounds joins per client IP (nil = unlimited); beyond it
	// join gets 429.
	JoinLimiter *IPLimiter
}

// NewSessionWithOptions makes the session of one socket with opts.
func NewSessionWithOptions(c *Conn, mgr *room.Manager, log *slog.Logger, opts SessionOptions) *Session {
	s := NewSession(c, mgr, log)
	s.opts = opts
	return s
}

// authorize applies the per-IP join rate, then checks the join token when keys are configured and turns its
// claims into the request's identity and permissions: 401 for a bad or
// missing token, 403 for a token of another room.
func (s *Session) authorize(params *protocol.JoinParams, req *room.JoinRequest) *protocol.Error {
	if !s.opts.JoinLimiter.Allow(s.conn.RemoteAddr()) {
		return protocol.Errorf(protocol.CodeRateLimited, "rate limited: too many joins from your address; retry in a few seconds")
	}
	if !s.opts.Auth.Enabled() {
		return nil
	}
	claims, err := s.opts.Auth.Verify(params.Token)
	if err != nil {
		return err
	}
	if err := claims.CanJoin(params.Room); err != nil {
		return err
	}
	g := claims.Grants
	req.Identity = claims.Identity()
	req.Permissions = &room.Permissions{CanPublish: g.Publish(), CanSubscribe: g.Subscribe(), CanPublishData: g.PublishData()}
	if !g.Subscribe() {
		req.AutoSubscribe = false
	}
	return nil
}
