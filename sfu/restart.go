package sfu

import "github.com/pion/webrtc/v4"

// PendingOffer returns the local offer that still awaits its answer, if
// any. pion cannot replace a pending local offer (no local rollback), so
// after a lost answer the same offer must be made again.
func (s *Subscriber) PendingOffer() (string, bool) {
	if s.pc.SignalingState() != webrtc.SignalingStateHaveLocalOffer {
		return "", false
	}
	d := s.pc.PendingLocalDescription()
	if d == nil {
		return "", false
	}
	return withoutRTCPCandidates(d.SDP), true
}

// CreateRestartOffer is CreateOffer with an ICE restart: new ICE
// credentials and candidates, the same transceivers and DTLS association.
// The client's answer completes the restart. Call it only when no offer is
// pending.
func (s *Subscriber) CreateRestartOffer() (string, error) {
	offer, err := s.createOffer(&webrtc.OfferOptions{ICERestart: true})
	if err != nil {
		return "", err
	}
	if err := s.pc.SetLocalDescription(offer); err != nil {
		return "", err
	}
	return withoutRTCPCandidates(s.pc.LocalDescription().SDP), nil
}
