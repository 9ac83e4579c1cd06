package client

import (
	"github.com/pion/webrtc/v4"
	"github.com/starling-rtc/starling/protocol"
)

// The server's subscriber offers answered in order, the tracks they bring,
// and ICE candidates trickled to the server.

// offer is a subscriber offer and the socket it came on.
type offer struct {
	sdp string
	s   *socket
}

// answerLoop answers subscriber offers in order until the session done ends.
func (c *Client) answerLoop(done chan struct{}) {
	defer c.wg.Done()
	for {
		select {
		case <-done:
			return
		case o := <-c.offers:
			if err := c.answer(o); err != nil {
				c.log.Warn("answering subscriber offer", "err", err)
			}
		}
	}
}

// answer answers o on the socket it came on: an answer sent on another
// socket could be taken for the answer to a later offer. While answering,
// the subscriber's own candidates wait, so the server never gets one of a
// restarted ICE session before the answer that starts it.
func (c *Client) answer(o offer) error {
	c.peerMu.Lock() // a failover may be replacing the connection
	defer c.peerMu.Unlock()
	if o.s != c.socket() {
		return nil // from a socket resumed since: the server offers it again if need be
	}
	c.gate.hold(protocol.TargetSubscriber)
	defer c.gate.release(protocol.TargetSubscriber, c.notifyCandidate)
	if err := c.sub.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: o.sdp}); err != nil {
		return err
	}
	c.cands.flush(protocol.TargetSubscriber)
	ans, err := c.sub.CreateAnswer(nil)
	if err != nil {
		return err
	}
	if err := c.sub.SetLocalDescription(ans); err != nil {
		return err
	}
	return c.notifyOn(o.s, protocol.MethodAnswer, protocol.SDPParams{SDP: c.sub.LocalDescription().SDP})
}

func (c *Client) handleTrack(t *webrtc.TrackRemote, r *webrtc.RTPReceiver) {
	c.hmu.Lock()
	f := c.onTrack
	c.hmu.Unlock()
	go drainRTCP(r)
	if f == nil {
		go drain(t)
		return
	}
	f(&RemoteTrack{ParticipantID: t.StreamID(), TrackID: t.ID(), Track: t, Receiver: r})
}

// drainRTCP reads a receiver's RTCP until it stops, so that the interceptors
// process the server's sender reports.
func drainRTCP(r *webrtc.RTPReceiver) {
	for {
		if _, _, err := r.ReadRTCP(); err != nil {
			return
		}
	}
}

// drain reads a track nobody asked for, so its buffers never fill.
func drain(t *webrtc.TrackRemote) {
	buf := make([]byte, 1500)
	for {
		if _, _, err := t.Read(buf); err != nil {
			return
		}
	}
}

func (c *Client) sendCandidate(target string, cand *webrtc.ICECandidate) {
	p := protocol.CandidateParams{Target: target}
	if cand != nil {
		init := cand.ToJSON()
		p.Candidate = &init
	}
	if c.gate.held(p) {
		return // sent by release, after the description it belongs to
	}
	c.notifyCandidate(p)
}

func (c *Client) notifyCandidate(p protocol.CandidateParams) {
	if !c.closed.Load() {
		_ = c.Notify(protocol.MethodCandidate, p)
	}
}
