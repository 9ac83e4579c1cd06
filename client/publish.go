package client

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"

	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/rtcp"
	"github.com/pion/webrtc/v4"
	"github.com/starling-rtc/starling/internal/udpgro"
	"github.com/starling-rtc/starling/protocol"
)

// LocalTrack is a track to publish with its metadata: either Track, or
// Simulcast for a video track sent as several encodings.
type LocalTrack struct {
	Track     webrtc.TrackLocal
	Simulcast *SimulcastTrack
	Source    string // protocol.SourceCamera, ...
	Name      string
	Layers    []protocol.LayerHint // sizes of the simulcast encodings, by rid
	// OnKeyframeRequest runs when the server asks for a keyframe (PLI/FIR);
	// an encoder should answer with one. The client reads the sender's RTCP
	// itself (the interceptors need it read), so this is the only way to see it.
	// For a Simulcast track it runs for a request on any encoding, unless
	// OnLayerKeyframeRequest is set.
	OnKeyframeRequest func()
	// OnLayerKeyframeRequest, for a Simulcast track, runs instead of
	// OnKeyframeRequest with the rid of the encoding the server asks a
	// keyframe of (an encoder can then answer on that encoding only).
	OnLayerKeyframeRequest func(rid string)
}

// Published is a track the server accepted, with the sender carrying it.
type Published struct {
	protocol.Track
	Sender *webrtc.RTPSender
}

// Publish adds tracks to the publisher connection and negotiates them.
func (c *Client) Publish(ctx context.Context, tracks ...LocalTrack) ([]Published, error) {
	c.pubMu.Lock()
	defer c.pubMu.Unlock()
	if err := c.addDataChannelLocked(); err != nil { // a lazy publisher's first offer
		return nil, err
	}
	byID := map[string]pubRecord{}
	anns := make([]protocol.TrackAnnouncement, 0, len(tracks))
	for _, t := range tracks {
		tr, err := c.attachLocked(t)
		if err != nil {
			return nil, err
		}
		byID[t.id()] = pubRecord{local: t, tr: tr}
		t.readRTCP(tr.Sender())
		anns = append(anns, t.announcement())
	}
	res, err := c.negotiateLocked(ctx, anns)
	if err != nil {
		return nil, err
	}
	out := make([]Published, 0, len(res.Tracks))
	for _, t := range res.Tracks {
		a, ok := byID[t.CID]
		if !ok {
			continue
		}
		if sim := a.local.Simulcast; sim != nil {
			sim.negotiated(a.tr, t)
			c.simMu.Lock()
			c.simulcast[t.ID] = sim
			c.simMu.Unlock()
		}
		a.track = t
		c.published = append(c.published, a) // published again after a failover
		out = append(out, Published{Track: t, Sender: a.tr.Sender()})
	}
	return out, nil
}

// id is the track's msid track id, the `trackId` of its announcement.
func (t LocalTrack) id() string {
	if t.Simulcast != nil {
		return t.Simulcast.ID()
	}
	if t.Track != nil {
		return t.Track.ID()
	}
	return ""
}

func (t LocalTrack) announcement() protocol.TrackAnnouncement {
	return protocol.TrackAnnouncement{TrackID: t.id(), Source: t.Source, Name: t.Name, Layers: t.Layers}
}

// attachLocked adds t to the publisher connection. Call with pubMu held.
func (c *Client) attachLocked(t LocalTrack) (*webrtc.RTPTransceiver, error) {
	switch {
	case t.Simulcast != nil:
		return t.Simulcast.attach(c.pub)
	case t.Track != nil:
		tr, err := c.pub.AddTransceiverFromTrack(t.Track, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly})
		if err == nil {
			preferTrackCodec(tr, t.Track)
		}
		return tr, err
	default:
		return nil, errors.New("LocalTrack needs Track or Simulcast")
	}
}

// Unpublish stops sending a published track and renegotiates.
func (c *Client) Unpublish(ctx context.Context, p Published) error {
	c.pubMu.Lock()
	defer c.pubMu.Unlock()
	sender := p.Sender
	at := -1
	for i, r := range c.published {
		if r.track.ID == p.ID {
			at, sender = i, r.tr.Sender() // the current one, after a failover
		}
	}
	if err := c.pub.RemoveTrack(sender); err != nil {
		return err
	}
	if at >= 0 {
		c.published = append(c.published[:at], c.published[at+1:]...)
	}
	if err := c.Call(ctx, protocol.MethodUnpublish, protocol.UnpublishParams{TrackID: p.ID}, nil); err != nil {
		return err
	}
	_, err := c.negotiateLocked(ctx, nil)
	return err
}

// preferTrackCodec makes the offer carry the track's own codec only (and its
// RTX). pion offers every registered codec in each transceiver, VP8 first,
// whatever the track carries; the server (like any answerer) reads the first
// as the codec, and the rest is SDP nobody uses.
func preferTrackCodec(tr *webrtc.RTPTransceiver, track webrtc.TrackLocal) {
	withCodec, ok := track.(interface {
		Codec() webrtc.RTPCodecCapability
	})
	if !ok {
		return
	}
	want := withCodec.Codec()
	all := tr.Sender().GetParameters().Codecs
	var keep []webrtc.RTPCodecParameters
	pts := map[webrtc.PayloadType]bool{}
	for _, c := range all {
		if strings.EqualFold(c.MimeType, want.MimeType) && (want.SDPFmtpLine == "" || c.SDPFmtpLine == want.SDPFmtpLine) {
			keep = append(keep, c)
			pts[c.PayloadType] = true
		}
	}
	if len(keep) == 0 {
		return
	}
	for _, c := range all {
		if apt, ok := strings.CutPrefix(c.SDPFmtpLine, "apt="); ok && strings.EqualFold(c.MimeType, "video/rtx") {
			if pt, err := strconv.Atoi(apt); err == nil && pts[webrtc.PayloadType(pt)] {
				keep = append(keep, c)
			}
		}
	}
	_ = tr.SetCodecPreferences(keep)
}

// negotiateLocked runs one publisher offer/answer exchange. Call with pubMu
// held.
func (c *Client) negotiateLocked(ctx context.Context, anns []protocol.TrackAnnouncement) (*protocol.OfferResult, error) {
	offer, err := c.pub.CreateOffer(nil)
	if err != nil {
		return nil, err
	}
	if err := c.pub.SetLocalDescription(offer); err != nil {
		return nil, err
	}
	if anns == nil {
		anns = []protocol.TrackAnnouncement{}
	}
	var res protocol.OfferResult
	if err := c.Call(ctx, protocol.MethodOffer, protocol.OfferParams{SDP: c.pub.LocalDescription().SDP, Tracks: anns}, &res); err != nil {
		return nil, fmt.Errorf("publisher offer: %w", err)
	}
	if err := c.pub.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: res.SDP}); err != nil {
		return nil, err
	}
	c.cands.flush(protocol.TargetPublisher)
	return &res, nil
}

// readRTCP starts reading the RTCP of each of the track's encodings on s
// until s stops, reporting keyframe requests. pion's RTPSender.ReadRTCP
// reads the first encoding's only: a simulcast publisher never heard the
// server's keyframe requests for its other layers (a subscriber switched
// up waited for the encoder's next periodic keyframe, or for ever) and
// never answered their NACKs (pion's responder sees only RTCP that is read).
func (t LocalTrack) readRTCP(s *webrtc.RTPSender) {
	if t.Simulcast == nil {
		go readRTCPFrom(s.Read, t.OnKeyframeRequest)
		return
	}
	for _, rid := range t.Simulcast.RIDs() {
		onKey := t.OnKeyframeRequest
		if t.OnLayerKeyframeRequest != nil {
			onKey = func() { t.OnLayerKeyframeRequest(rid) }
		}
		go readRTCPFrom(func(b []byte) (int, interceptor.Attributes, error) { return s.ReadSimulcast(b, rid) }, onKey)
	}
}

// readRTCPFrom reads with read until it fails, reporting keyframe
// requests; a packet that does not parse is skipped, not the end.
func readRTCPFrom(read func([]byte) (int, interceptor.Attributes, error), onKeyframe func()) {
	b := make([]byte, 1500)
	for {
		n, _, err := read(b)
		if err != nil {
			return
		}
		pkts, err := rtcp.Unmarshal(b[:n])
		if err != nil {
			continue
		}
		for _, p := range pkts {
			switch p.(type) {
			case *rtcp.PictureLossIndication, *rtcp.FullIntraRequest:
				if onKeyframe != nil {
					onKeyframe()
				}
			}
		}
	}
}

// candidateQueues holds remote candidates until each connection has its
// remote description.
type candidateQueues struct {
	mu       sync.Mutex
	pub, sub *webrtc.PeerConnection
	pending  map[string][]webrtc.ICECandidateInit
}

func (q *candidateQueues) init(pub, sub *webrtc.PeerConnection) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.pub, q.sub = pub, sub
	if q.pending == nil { // keep what arrived before the connections existed
		q.pending = map[string][]webrtc.ICECandidateInit{}
	}
}

func (q *candidateQueues) pc(target string) *webrtc.PeerConnection {
	if target == protocol.TargetPublisher {
		return q.pub
	}
	return q.sub
}

func (q *candidateQueues) add(p protocol.CandidateParams) {
	if p.Candidate == nil {
		return
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	pc := q.pc(p.Target)
	// A candidate of an ICE session whose description has not been applied
	// yet (before the first one, or during an ICE restart) waits for it.
	if pc == nil || !fitsRemote(pc, *p.Candidate) {
		// The server's first subscriber offer and its candidates can arrive
		// between the join result and init: keep them too.
		if q.pending == nil {
			q.pending = map[string][]webrtc.ICECandidateInit{}
		}
		if len(q.pending[p.Target]) >= maxPendingCandidates {
			q.pending[p.Target] = q.pending[p.Target][1:]
		}
		q.pending[p.Target] = append(q.pending[p.Target], *p.Candidate)
		return
	}
	_ = pc.AddICECandidate(*p.Candidate)
}

// maxPendingCandidates bounds the candidates kept per connection; the
// oldest (most likely of a finished ICE session) go first.
const maxPendingCandidates = 64

// flush adds the waiting candidates that fit the remote description now;
// the others keep waiting.
func (q *candidateQueues) flush(target string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	pc := q.pc(target)
	var keep []webrtc.ICECandidateInit
	for _, c := range q.pending[target] {
		if fitsRemote(pc, c) {
			_ = pc.AddICECandidate(c)
		} else {
			keep = append(keep, c)
		}
	}
	if len(keep) == 0 {
		delete(q.pending, target)
	} else {
		q.pending[target] = keep
	}
}

// ICECheckRetries is how many connectivity checks the client sends on a
// candidate pair before giving it up, 200 ms apart: 10 s. pion's default,
// 7 (1.6 s), lost connections on a busy machine: when the first checks
// went unanswered (the server's ICE agent started late and discarded
// them), the client, which as the offerer is the only side that may
// nominate a pair, gave its only pair up and never checked it again, and
// the connection stayed "checking" until ICE failed 30 s later. Browsers
// check a pair for seconds too. Use it on any API the client is given.
const ICECheckRetries = 50

// LoopbackAPI is NewAPI restricted to 127.0.0.1: tests and local load
// generation never touch another network.
func LoopbackAPI() (*webrtc.API, error) {
	return LoopbackAPIWith(nil)
}

// LoopbackAPIWith is LoopbackAPI with extra interceptors placed first in
// the chain, nearest the network (a test's loss or throttle sees packets
// before NACK and congestion-control feedback do). register replaces the
// default interceptors (pion's, with the client's TWCC feedback: twcc.go)
// when not nil (e.g. to leave out TWCC).
func LoopbackAPIWith(first []interceptor.Factory, register ...func(*webrtc.MediaEngine, *interceptor.Registry) error) (*webrtc.API, error) {
	return buildAPI(func(se *webrtc.SettingEngine) {
		se.SetIPFilter(func(ip net.IP) bool { return ip.IsLoopback() })
		se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	}, first, register...)
}

// buildAPI makes a pion API with default codecs and interceptors.
func buildAPI(tune func(*webrtc.SettingEngine), first []interceptor.Factory,
	register ...func(*webrtc.MediaEngine, *interceptor.Registry) error,
) (*webrtc.API, error) {
	m := &webrtc.MediaEngine{}
	if err := m.RegisterDefaultCodecs(); err != nil {
		return nil, err
	}
	ir := &interceptor.Registry{}
	ir.Add(rtxRIDFactory{}) // nearest the network: fixes what the NACK responder sends
	for _, f := range first {
		ir.Add(f)
	}
	if len(register) == 0 {
		register = append(register, registerDefaults)
	}
	for _, r := range register {
		if err := r(m, ir); err != nil {
			return nil, err
		}
	}
	se := webrtc.SettingEngine{}
	// UDP sockets read with GRO: a frame the server sent as one segmented
	// message is read with one system call (internal/udpgro).
	if n, err := udpgro.NewNet(); err == nil {
		se.SetNet(n)
	}
	se.SetIncludeLoopbackCandidate(true)
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	se.SetICEMaxBindingRequests(ICECheckRetries)
	if tune != nil {
		tune(&se)
	}
	return webrtc.NewAPI(webrtc.WithMediaEngine(m), webrtc.WithInterceptorRegistry(ir), webrtc.WithSettingEngine(se)), nil
}
