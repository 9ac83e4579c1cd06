package sfu

import (
	"fmt"

	"github.com/pion/rtcp"
	"github.com/pion/webrtc/v4"
)

// Publisher is the connection a participant sends on; the client offers.
type Publisher struct {
	peer
	onData func(text []byte)
}

// NewPublisher makes a publisher connection. onTrack runs for each incoming
// encoding (once per rid with simulcast); onData for each text message on
// the client's `data` channel.
func NewPublisher(e *Engine, iceServers []webrtc.ICEServer,
	onTrack func(*webrtc.TrackRemote, *webrtc.RTPReceiver), onData func(text []byte),
) (*Publisher, error) {
	pc, err := e.NewPeerConnection(iceServers)
	if err != nil {
		return nil, err
	}
	p := &Publisher{peer: peer{pc: pc}, onData: onData}
	p.watchState()
	pc.OnTrack(onTrack)
	pc.OnDataChannel(func(dc *webrtc.DataChannel) {
		if dc.Label() != "data" {
			return
		}
		dc.OnMessage(func(m webrtc.DataChannelMessage) {
			if m.IsString && p.onData != nil {
				p.onData(m.Data)
			}
		})
	})
	return p, nil
}

// HandleOffer applies the client's offer and returns the answer. The answer
// is returned before gathering ends: candidates trickle.
func (p *Publisher) HandleOffer(sdp string) (string, error) {
	answer, err := p.answerOffer(sdp)
	if err != nil {
		return "", err
	}
	if err := p.pc.SetLocalDescription(answer); err != nil {
		return "", fmt.Errorf("cannot apply answer: %w", err)
	}
	return withoutRTCPCandidates(p.pc.LocalDescription().SDP), nil
}

// answerOffer applies the client's offer (then the candidates that came
// before it) and creates the answer, not yet applied.
func (p *Publisher) answerOffer(sdp string) (webrtc.SessionDescription, error) {
	if err := checkRemote(sdp, true, -1); err != nil {
		return webrtc.SessionDescription{}, fmt.Errorf("cannot apply offer: %w", err)
	}
	sdp = msidForPion(sdp)
	if err := p.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: sdp}); err != nil {
		return webrtc.SessionDescription{}, fmt.Errorf("cannot apply offer: %w", err)
	}
	p.flushCandidates()
	answer, err := p.pc.CreateAnswer(nil)
	if err != nil {
		return webrtc.SessionDescription{}, fmt.Errorf("cannot answer offer: %w", err)
	}
	return answer, nil
}

// WriteRTCP sends RTCP (keyframe requests) to the publisher.
func (p *Publisher) WriteRTCP(pkts []rtcp.Packet) error { return p.pc.WriteRTCP(pkts) }

// Transceivers lists the connection's transceivers.
func (p *Publisher) Transceivers() []*webrtc.RTPTransceiver { return p.pc.GetTransceivers() }

// NegotiatedCodec returns the first codec negotiated for a mid, if any.
func (p *Publisher) NegotiatedCodec(mid string) (webrtc.RTPCodecParameters, bool) {
	for _, t := range p.pc.GetTransceivers() {
		if t.Mid() != mid || t.Receiver() == nil {
			continue
		}
		codecs := t.Receiver().GetParameters().Codecs
		if len(codecs) > 0 {
			return codecs[0], true
		}
	}
	return webrtc.RTPCodecParameters{}, false
}
