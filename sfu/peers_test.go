package sfu

import (
	"testing"

	"github.com/pion/webrtc/v4"
)

// negotiateGathered runs one offer/answer between two peer connections,
// each description sent once its candidates are all gathered (no trickle).
func negotiateGathered(t *testing.T, offerer, answerer *webrtc.PeerConnection) {
	t.Helper()
	negotiateGatheredWith(t, offerer, answerer, nil)
}

// negotiateGatheredWith is negotiateGathered with the offer's options; with
// ICERestart pion runs the ICE restart (the old session's connections
// closed) inside CreateOffer.
func negotiateGatheredWith(t *testing.T, offerer, answerer *webrtc.PeerConnection, opts *webrtc.OfferOptions) {
	t.Helper()
	offer, err := offerer.CreateOffer(opts)
	if err != nil {
		t.Fatal(err)
	}
	gathered := webrtc.GatheringCompletePromise(offerer)
	if err := offerer.SetLocalDescription(offer); err != nil {
		t.Fatal(err)
	}
	<-gathered
	if err := answerer.SetRemoteDescription(*offerer.LocalDescription()); err != nil {
		t.Fatal(err)
	}
	answer, err := answerer.CreateAnswer(nil)
	if err != nil {
		t.Fatal(err)
	}
	gathered = webrtc.GatheringCompletePromise(answerer)
	if err := answerer.SetLocalDescription(answer); err != nil {
		t.Fatal(err)
	}
	<-gathered
	if err := offerer.SetRemoteDescription(*answerer.LocalDescription()); err != nil {
		t.Fatal(err)
	}
}
