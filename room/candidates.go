package room

import (
	"sync"

	"github.com/pion/webrtc/v4"

	"github.com/starling-rtc/starling/protocol"
)

// candidateGate keeps a connection's trickled candidates behind the
// description they belong to. pion starts gathering inside
// SetLocalDescription, so its first candidates used to reach the client
// before the subscriber `offer` notification, or before the `offer`
// result that carries the publisher's answer; a client that applies
// candidates as they come (a browser, webrtcbin, pion) then has no remote
// description to add them to. While a description is being made they are
// held, and sent right after it.
type candidateGate struct {
	target  string // protocol.TargetPublisher or TargetSubscriber
	mu      sync.Mutex
	holding bool
	held    []*webrtc.ICECandidateInit // nil = end of candidates
}

// candidate sends c now, or holds it while an offer is being made.
func (g *candidateGate) candidate(p *Participant, c *webrtc.ICECandidateInit) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.holding {
		g.held = append(g.held, c)
		return
	}
	p.notifyCandidate(g.target, c)
}

// hold starts holding candidates: call before making a description.
func (g *candidateGate) hold() {
	g.mu.Lock()
	g.holding = true
	g.mu.Unlock()
}

// release sends what was held, in order: call once the description is on
// its way to the client (or was not made).
func (g *candidateGate) release(p *Participant) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, c := range g.held {
		p.notifyCandidate(g.target, c)
	}
	g.held, g.holding = nil, false
}

func (p *Participant) notifyCandidate(target string, c *webrtc.ICECandidateInit) {
	p.peer.Notify(protocol.MethodCandidate, protocol.CandidateParams{Target: target, Candidate: c})
}

// HoldPublisherCandidates holds the publisher connection's candidates
// until ReleasePublisherCandidates: the signaling layer brackets an `offer`
// request with them, releasing once the result (the answer) is queued.
func (p *Participant) HoldPublisherCandidates() { p.pubCandidates.hold() }

// ReleasePublisherCandidates sends the candidates held since
// HoldPublisherCandidates.
func (p *Participant) ReleasePublisherCandidates() { p.pubCandidates.release(p) }
