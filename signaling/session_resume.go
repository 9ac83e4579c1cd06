package signaling

import (
	"github.com/starling-rtc/starling/protocol"
)

// resume handles `join {room, resume: token}`: the participant whose socket
// dropped (or is about to be found dropped) continues on this socket with
// the same id, tracks and subscriptions. The resume token is the
// credential: it was handed out only to that participant, works once and is
// replaced by the one in the result, so no access token is checked again
// (it may well have expired by now). name, metadata and autoSubscribe are
// ignored: the participant keeps its own.
func (s *Session) resume(params *protocol.JoinParams) (any, *protocol.Error) {
	p, res, err := s.mgr.ResumeWith(params.Room, params.Resume, params.Subscriptions, s)
	if err != nil {
		return nil, asProtocolError(err)
	}
	s.mu.Lock()
	s.p = p
	s.after = p.Resumed // the ICE-restart offer follows the result
	s.mu.Unlock()
	s.log.Info("resumed", "room", params.Room, "participant", p.ID())
	return res, nil
}

// Replaced implements room.Replaceable: the client resumed on another
// socket (or is asked to resume through another node), so this one no
// longer speaks for the participant. It is closed without `leave`, which
// would tell the client its session is over; why is the close reason.
func (s *Session) Replaced(why string) {
	s.mu.Lock()
	s.p = nil
	s.mu.Unlock()
	go s.conn.Close(1000, why)
}
