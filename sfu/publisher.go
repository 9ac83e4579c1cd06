package sfu

import (
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/rtcp"
	"github.com/pion/webrtc/v4"
)

// Publisher is the connection a participant sends on; the client offers.
type Publisher struct {
	peer
	onData func(text []byte)
	watch  *midWatch
	// negMu orders the client's offers, ICE restarts and adopt's local
	// re-application of the offer (undeclared.go).
	negMu   sync.Mutex
	offer   string            // the client's last offer as applied, before declareSSRCs; guarded by negMu
	learned map[string]uint32 // mid → SSRC placed by its MID (undeclared.go); guarded by negMu
}

// NewPublisher makes a publisher connection. onTrack runs for each incoming
// encoding (once per rid with simulcast); onData for each text message on
// the client's `data` channel.
func NewPublisher(e *Engine, iceServers []webrtc.ICEServer,
	onTrack func(*webrtc.TrackRemote, *webrtc.RTPReceiver), onData func(text []byte),
) (*Publisher, error) {
	// An API of its own for the connection's own midWatch, before the
	// shared interceptors.
	watch := &midWatch{}
	ir := &interceptor.Registry{}
	ir.Add(watch)
	ir.Add(registryFactory{e.ir})
	api := webrtc.NewAPI(webrtc.WithMediaEngine(e.media), webrtc.WithInterceptorRegistry(ir), webrtc.WithSettingEngine(e.se))
	pc, err := api.NewPeerConnection(peerConfig(iceServers))
	if err != nil {
		return nil, err
	}
	p := &Publisher{peer: peer{pc: pc}, onData: onData, watch: watch}
	watch.onGiveUp = p.adopt
	p.watchState()
	pc.OnTrack(func(t *webrtc.TrackRemote, r *webrtc.RTPReceiver) {
		if t.RID() == "" {
			go p.placed(uint32(t.SSRC()), t.Kind(), uint8(t.PayloadType()), r)
		}
		onTrack(t, r)
	})
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
	p.negMu.Lock()
	defer p.negMu.Unlock()
	answer, err := p.answerOffer(sdp)
	if err != nil {
		return "", err
	}
	if err := p.pc.SetLocalDescription(answer); err != nil {
		return "", fmt.Errorf("cannot apply answer: %w", err)
	}
	return receiveOnly(withoutRTCPCandidates(p.pc.LocalDescription().SDP)), nil
}

// receiveOnly rewrites the directions of a publisher answer as the server
// keeps them: it never sends on this connection. pion answers a section the
// client offered recvonly (a transceiver that only receives, on the wrong
// connection) with sendonly, and one offered sendrecv whose transceiver
// began so with sendrecv, and the client then waited for media that never
// came (a browser fires ontrack for it). So sendonly reads inactive and
// sendrecv recvonly; pion's own view stays as it was (it refuses a changed
// local description), which changes nothing: the server adds no sender.
func receiveOnly(answer string) string {
	if !strings.Contains(answer, "a=sendonly") && !strings.Contains(answer, "a=sendrecv") {
		return answer
	}
	lines := strings.SplitAfter(answer, "\n")
	media := false
	for i, l := range lines {
		t := strings.TrimRight(l, "\r\n")
		eol := l[len(t):]
		switch {
		case strings.HasPrefix(t, "m="):
			media = strings.HasPrefix(t, "m=audio ") || strings.HasPrefix(t, "m=video ")
		case media && t == "a=sendonly":
			lines[i] = "a=inactive" + eol
		case media && t == "a=sendrecv":
			lines[i] = "a=recvonly" + eol
		}
	}
	return strings.Join(lines, "")
}

// answerOffer applies the client's offer (then the candidates that came
// before it) and creates the answer, not yet applied. The caller holds
// negMu.
func (p *Publisher) answerOffer(sdp string) (webrtc.SessionDescription, error) {
	if err := checkRemote(sdp, true, -1); err != nil {
		return webrtc.SessionDescription{}, fmt.Errorf("cannot apply offer: %w", err)
	}
	client := sdp
	open := undeclaredMIDs(client)
	for mid := range p.learned {
		if !open[mid] {
			delete(p.learned, mid) // the section declares its SSRCs now, or stopped sending
		}
	}
	p.watch.armed.Store(len(open) > 0)
	sdp = ridsForPion(msidForPion(declareSSRCs(sdp, p.learned)))
	if err := p.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: sdp}); err != nil {
		return webrtc.SessionDescription{}, fmt.Errorf("cannot apply offer: %w", err)
	}
	p.offer = client
	p.flushCandidates()
	answer, err := p.pc.CreateAnswer(nil)
	if err != nil {
		return webrtc.SessionDescription{}, fmt.Errorf("cannot answer offer: %w", err)
	}
	return answer, nil
}

// RestartICE is peer.RestartICE in the order of the client's offers; the
// offer kept for adopt takes the new credentials.
func (p *Publisher) RestartICE(ufrag, pwd string, wait time.Duration) (string, error) {
	p.negMu.Lock()
	defer p.negMu.Unlock()
	if p.offer == "" || p.pc.RemoteDescription() == nil || p.pc.SignalingState() != webrtc.SignalingStateStable {
		return p.peer.RestartICE(ufrag, pwd, wait)
	}
	// The client's offer with the SSRCs placed since (undeclared.go): the
	// remote description lacks those pion placed by itself, and pion stops
	// a receiver whose SSRC a new description does not name.
	local, err := p.restartWith(ridsForPion(msidForPion(declareSSRCs(p.offer, p.learned))), ufrag, pwd, wait)
	if err == nil {
		if o, err := withICECredentials(p.offer, ufrag, pwd); err == nil {
			p.offer = o
		}
	}
	return local, err
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
