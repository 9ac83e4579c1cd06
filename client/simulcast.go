package client

import (
	"encoding/json"
	"errors"
	"fmt"
	"sync"

	"github.com/pion/rtp"
	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"
	"github.com/starling-rtc/starling/protocol"
)

// SimulcastTrack is one video track sent as several encodings, one per rid.
// pion does not stamp outgoing packets with the mid and rid header
// extensions a simulcast receiver needs to tell encodings apart, so WriteRTP
// does it with the ids negotiated for the sender.
type SimulcastTrack struct {
	rids   []string
	tracks map[string]*webrtc.TrackLocalStaticRTP

	mu           sync.Mutex
	mid          string
	midID, ridID uint8
	trackID      string            // the server's id, once published
	ridOf        map[string]string // quality -> rid, from the server's Track
	active       map[string]bool   // rid -> the server wants it (publishLayers)
	stamped      map[string]int    // rid -> packets sent with mid/rid extensions
	sender       *webrtc.RTPSender
}

// ridPackets is how many packets of each encoding carry mid and rid.
const ridPackets = 100

// NewSimulcastTrack makes a simulcast track; rids are listed low to high.
func NewSimulcastTrack(codec webrtc.RTPCodecCapability, id, streamID string, rids ...string) (*SimulcastTrack, error) {
	if len(rids) < 1 || len(rids) > 3 {
		return nil, errors.New("simulcast needs 1 to 3 rids")
	}
	s := &SimulcastTrack{rids: rids, tracks: map[string]*webrtc.TrackLocalStaticRTP{}, active: map[string]bool{}, stamped: map[string]int{}}
	for _, rid := range rids {
		t, err := webrtc.NewTrackLocalStaticRTP(codec, id, streamID, webrtc.WithRTPStreamID(rid))
		if err != nil {
			return nil, err
		}
		s.tracks[rid] = t
		s.active[rid] = true
	}
	return s, nil
}

// RIDs lists the encodings, low to high.
func (s *SimulcastTrack) RIDs() []string { return append([]string(nil), s.rids...) }

// ID is the track id shared by all encodings (the msid track id).
func (s *SimulcastTrack) ID() string { return s.tracks[s.rids[0]].ID() }

// Active reports whether the server currently wants this encoding
// (publishLayers); an encoder should skip inactive ones.
func (s *SimulcastTrack) Active(rid string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.active[rid]
}

// WriteRTP sends a packet on one encoding, with mid and rid extensions.
func (s *SimulcastTrack) WriteRTP(rid string, p *rtp.Packet) error {
	t, ok := s.tracks[rid]
	if !ok {
		return fmt.Errorf("unknown rid %q", rid)
	}
	s.mu.Lock()
	mid, midID, ridID := s.mid, s.midID, s.ridID
	s.mu.Unlock()
	if midID == 0 || ridID == 0 {
		return errors.New("simulcast track not negotiated yet")
	}
	// Only the first packets of each encoding carry mid and rid, as in
	// browsers: the receiver learns SSRC -> rid from them. pion's NACK
	// responder copies a packet's extensions into its RTX retransmission,
	// and an RTX packet with rid (instead of repaired-rid) makes the receiver
	// take the RTX SSRC for a new stream of that encoding.
	//
	// Only packets written once the connection is up count: pion drops
	// what is written before (no SRTP keys yet), and on a busy machine
	// the first 100 packets of an encoding all went that way, the server
	// saw none with a rid, gave up on the encoding ("incoming SSRC failed
	// Simulcast probing") and the track was never published.
	s.mu.Lock()
	sender := s.sender
	s.mu.Unlock()
	up := sender != nil && sender.Transport() != nil && sender.Transport().State() == webrtc.DTLSTransportStateConnected
	s.mu.Lock()
	stamp := s.stamped[rid] < ridPackets
	if up {
		s.stamped[rid]++
	}
	s.mu.Unlock()
	if stamp {
		if err := p.Header.SetExtension(midID, []byte(mid)); err != nil {
			return err
		}
		if err := p.Header.SetExtension(ridID, []byte(rid)); err != nil {
			return err
		}
	}
	return t.WriteRTP(p)
}

// attach adds the encodings to a publisher connection.
func (s *SimulcastTrack) attach(pc *webrtc.PeerConnection) (*webrtc.RTPTransceiver, error) {
	tr, err := pc.AddTransceiverFromTrack(s.tracks[s.rids[0]], webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly})
	if err != nil {
		return nil, err
	}
	for _, rid := range s.rids[1:] {
		if err := tr.Sender().AddEncoding(s.tracks[rid]); err != nil {
			return nil, err
		}
	}
	preferTrackCodec(tr, s.tracks[s.rids[0]])
	return tr, nil
}

// negotiated records the mid and extension ids once the answer is applied.
func (s *SimulcastTrack) negotiated(tr *webrtc.RTPTransceiver, published protocol.Track) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.mid = tr.Mid()
	s.sender = tr.Sender()
	for _, e := range tr.Sender().GetParameters().HeaderExtensions {
		switch e.URI {
		case sdp.SDESMidURI:
			s.midID = uint8(e.ID)
		case sdp.SDESRTPStreamIDURI:
			s.ridID = uint8(e.ID)
		}
	}
	s.trackID = published.ID
	// On new connections (a failover) the receiver learns each encoding's
	// SSRC afresh, and wants every layer until it says otherwise.
	s.stamped = map[string]int{}
	for rid := range s.active {
		s.active[rid] = true
	}
	s.ridOf = map[string]string{}
	for _, l := range published.Layers {
		s.ridOf[l.Quality] = l.RID
	}
}

// setActive applies a publishLayers notification.
func (s *SimulcastTrack) setActive(qualities []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for rid := range s.active {
		s.active[rid] = false
	}
	for _, q := range qualities {
		if rid, ok := s.ridOf[q]; ok {
			s.active[rid] = true
		}
	}
}

// handlePublishLayers routes publishLayers to the simulcast track it names.
func (c *Client) handlePublishLayers(raw json.RawMessage) {
	var p protocol.PublishLayersParams
	if json.Unmarshal(raw, &p) != nil {
		return
	}
	c.simMu.Lock()
	s := c.simulcast[p.TrackID]
	c.simMu.Unlock()
	if s != nil {
		s.setActive(p.Active)
	}
}
