package server

import (
	"context"
	"time"
)

// Abort stops the node as SIGKILL would, as far as clients and the other
// nodes can tell: the HTTP listener, the signaling sockets (no `leave`),
// the media sockets and the cluster bus close at once, with no goodbye.
// Tests use it to kill a node in-process; Shutdown must not follow.
func (s *Server) Abort() {
	if s.cluster != nil {
		s.cluster.Abort()
	}
	_ = s.http.Close()
	s.socks.closeAll()
	s.engine.Close()
}

// Drain hands a cluster node's participants over to the other nodes before
// it stops (SIGTERM, docs/cluster-failover.md "Drain"): joins are refused
// from now on, every client is asked to resume through another node
// (`reconnect`), and each participant is released to the node it resumes
// through. It returns when none is left or ctx ends, with the number still
// here; Shutdown follows. A single node has nowhere to send its clients:
// Drain does nothing there, nor on the last live node of a cluster (the
// others gone): its clients could resume nowhere, and waiting out the
// window would only delay their `leave` and the process's exit.
func (s *Server) Drain(ctx context.Context) int {
	if s.cluster == nil {
		return s.rooms.Snapshot().Participants
	}
	if s.cluster.Alone(ctx) {
		s.log.Info("not draining: no other live node to resume through")
		return s.rooms.Snapshot().Participants
	}
	s.log.Info("draining: asking every client to resume through another node")
	left := s.rooms.Drain(ctx)
	s.log.Info("drained", "participants_left", left)
	if s.recorder != nil {
		// The room recordings go on on another node of their rooms
		// (recorder/handover.go): after the participants, so that the
		// new node has its part of each room. Bounded on its own, since
		// the drain may have used up ctx.
		hctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), handOverTimeout)
		if moved := s.recorder.HandOver(hctx); moved > 0 {
			s.log.Info("recordings handed over", "recordings", moved)
		}
		cancel()
	}
	return left
}

// handOverTimeout bounds the handover of a draining node's recordings:
// each stops (its files made final) and another node starts.
const handOverTimeout = 20 * time.Second

// DrainTimeout bounds Drain: the resume window (clients that have not
// resumed by then cannot any more), at most 30 s.
func (s *Server) DrainTimeout() time.Duration {
	return min(s.cfg.Room.ResumeWindow.Std(), 30*time.Second)
}
