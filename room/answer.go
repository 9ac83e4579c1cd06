package room

import (
	"time"

	"github.com/pion/webrtc/v4"
	"github.com/starling-rtc/starling/protocol"
	"github.com/starling-rtc/starling/sfu"
)

// Participants whose client signals over HTTP (WHIP, WHEP) have no channel
// for the server's offers or trickled candidates: the client offers, the
// server answers with every candidate, and a subscription change swaps the
// track feeding one of the offered media sections (sfu.Subscriber.SetSlot)
// instead of renegotiating.

// gatherWait bounds how long an answer waits for ICE gathering. Host and
// TCP candidates are ready at once; only STUN (server reflexive) ones take
// a round trip.
const gatherWait = 3 * time.Second

// answerPublisher answers a publisher offer, with all candidates when the
// client cannot receive trickled ones.
func (p *Participant) answerPublisher(sdp string) (string, error) {
	if p.answering {
		return p.pub.HandleOfferGathered(sdp, gatherWait)
	}
	return p.pub.HandleOffer(sdp)
}

// Answering reports whether the client offers and the server only answers
// (WHIP, WHEP).
func (p *Participant) Answering() bool { return p.answering }

// AnswerSubscriber answers an answering participant's offer to receive
// (WHEP). Subscriptions then fill its media sections, one track per section.
func (p *Participant) AnswerSubscriber(sdp string) (string, error) {
	if !p.answering {
		return "", protocol.Errorf(protocol.CodeConflict, "the server offers this participant's subscriber connection")
	}
	if _, err := sfu.ParseOffer(sdp); sfu.Refused(err) {
		return "", protocol.Errorf(protocol.CodeInvalidParams, "invalid params: sdp: %v", err)
	} else if err != nil {
		return "", protocol.Errorf(protocol.CodeInvalidParams, "invalid params: sdp does not parse: %v", err)
	}
	var answer string
	err := p.loop.do(func() error {
		var err error
		answer, err = p.sub.AnswerOffer(sdp, gatherWait)
		if err != nil {
			return protocol.Errorf(protocol.CodeInvalidParams, "invalid params: %v", err)
		}
		p.loop.started = true
		return nil
	})
	return answer, err
}

// SubscriberSlots reports how many audio and video tracks an answering
// participant's offer can receive at once.
func (p *Participant) SubscriberSlots() (audio, video int) { return p.sub.Slots() }

// Subscriber is the connection the participant receives on, for tools and
// tests that drive it below the room's decisions (a bandwidth probe, a down
// track's limits: web/browsertest's padding test).
func (p *Participant) Subscriber() *sfu.Subscriber { return p.sub }

// RestartICE restarts ICE on one of an answering participant's connections
// with the client's new credentials and returns the new local description.
func (p *Participant) RestartICE(target, ufrag, pwd string) (string, error) {
	switch target {
	case protocol.TargetPublisher:
		p.pubMu.Lock()
		defer p.pubMu.Unlock()
		return p.pub.RestartICE(ufrag, pwd, gatherWait)
	case protocol.TargetSubscriber:
		var sdp string
		err := p.loop.do(func() error {
			var err error
			sdp, err = p.sub.RestartICE(ufrag, pwd, gatherWait)
			return err
		})
		return sdp, err
	}
	return "", protocol.Errorf(protocol.CodeInvalidParams, `invalid params: target must be "publisher" or "subscriber"`)
}

// RemoteICE returns the client's ICE ufrag and password on one connection.
func (p *Participant) RemoteICE(target string) (ufrag, pwd string) {
	if target == protocol.TargetSubscriber {
		return p.sub.RemoteICE()
	}
	return p.pub.RemoteICE()
}

// ConnectionState is the state of one of the participant's connections.
func (p *Participant) ConnectionState(target string) webrtc.PeerConnectionState {
	if target == protocol.TargetSubscriber {
		return p.sub.State()
	}
	return p.pub.State()
}

// attach puts a new down track on the subscriber connection: a new
// transceiver for the next offer, or, when answering, the media section of
// its kind (the track it replaces stops).
func (l *subscriberLoop) attach(d *sfu.DownTrack) error {
	if !l.p.answering {
		return l.p.sub.AddDownTrack(d)
	}
	replaced, err := l.p.sub.SetSlot(d)
	if err != nil {
		return err
	}
	if replaced != "" {
		l.forget(replaced)
	}
	return nil
}
