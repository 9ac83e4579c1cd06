package server_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"
	"github.com/starling-rtc/starling/protocol"
)

// TestOutsiderUnpublishedStaysUnpublished: a raw client `unpublish`es its
// video but its SDP goes on sending it (it did not remove the sender), then
// sends another offer. docs/PROTOCOL.md "What an offer publishes": the
// result listed the video again under a new id, and that track never got a
// packet (pion hands a section's track over once) and was never announced:
// a track published in words only. It stays unpublished now, an offer
// that describes it in `tracks` is 409, and once an offer stops sending it,
// sending it again publishes it as a new track that others see.
func TestOutsiderUnpublishedStaysUnpublished(t *testing.T) {
	parallel(t)
	m := makeTestMedia(t)
	srv := startServer(t, nil)
	raw := dialRaw(t, srv)
	if _, resp := raw.request(protocol.MethodJoin, `{"room":"withdrawn","name":"A"}`); resp.Error != nil {
		t.Fatalf("join: %s", resp.Error.Message)
	}
	if offer, ok := raw.notification(20*time.Second, protocol.MethodOffer, nil); ok {
		raw.answer(offer)
	} else {
		t.Fatal("no subscriber offer after join")
	}
	pc, video, audio := sendingPC(t, plainAPI(t, nil), webrtc.Configuration{}, "stream-a")
	stop := make(chan struct{})
	wg := sendMedia(t, m, video, audio, stop)
	t.Cleanup(func() { close(stop); wg.Wait() })

	offer := func(tracks string) (map[string]string, *protocol.Error) { return rawOffer(t, raw, pc, tracks) }
	first, perr := offer(`[{"trackId":"video","source":"camera"},{"trackId":"audio","source":"microphone"}]`)
	if perr != nil || first["video"] == "" {
		t.Fatalf("first offer: %v %v", first, perr)
	}
	watcher := join(t, srv, "withdrawn", "B")
	published := func(id string) {
		t.Helper()
		if _, err := watcher.WaitEvent(ctxT(t, 20*time.Second), protocol.NotifyTrackPublished, func(raw json.RawMessage) bool {
			var tp protocol.TrackParams
			return json.Unmarshal(raw, &tp) == nil && tp.Track.ID == id
		}); err != nil {
			t.Fatalf("trackPublished %s: %v", id, err)
		}
	}
	published(first["video"])

	if _, resp := raw.request(protocol.MethodUnpublish, `{"trackId":"`+first["video"]+`"}`); resp.Error != nil {
		t.Fatalf("unpublish: %s", resp.Error.Message)
	}
	if _, err := watcher.WaitEvent(ctxT(t, 20*time.Second), protocol.NotifyTrackUnpublished, hasParam("trackId", first["video"])); err != nil {
		t.Fatalf("trackUnpublished: %v", err)
	}
	// Describing the unpublished track is refused, and changes nothing
	// (pion's last offer again: it cannot make one it would not apply).
	params, _ := json.Marshal(map[string]any{"sdp": pc.LocalDescription().SDP, "tracks": []map[string]string{{"trackId": "video", "source": "camera"}}})
	if _, resp := raw.request(protocol.MethodOffer, string(params)); resp.Error == nil || resp.Error.Code != protocol.CodeConflict {
		t.Errorf("an offer describing the unpublished track: %.300s, want 409", msgString(resp))
	}
	again, perr := offer(`[]`)
	if perr != nil {
		t.Fatalf("offer after unpublish: %v", perr)
	}
	if id, ok := again["video"]; ok {
		t.Errorf("the offer after unpublish lists the video again (%s): it would never be announced", id)
	}
	if again["audio"] != first["audio"] {
		t.Errorf("audio %s after the offer, was %s", again["audio"], first["audio"])
	}

	// Stop sending it, then send it again: a new track, announced.
	var sender *webrtc.RTPSender
	for _, s := range pc.GetSenders() {
		if s.Track() != nil && s.Track().ID() == "video" {
			sender = s
		}
	}
	if err := pc.RemoveTrack(sender); err != nil {
		t.Fatal(err)
	}
	if ids, perr := offer(`[]`); perr != nil || ids["video"] != "" {
		t.Fatalf("offer without the video: %v %v", ids, perr)
	}
	if _, err := pc.AddTrack(video); err != nil {
		t.Fatal(err)
	}
	back, perr := offer(`[{"trackId":"video","source":"camera"}]`)
	if perr != nil || back["video"] == "" || back["video"] == first["video"] {
		t.Fatalf("offer sending the video again: %v %v, want a new track", back, perr)
	}
	published(back["video"])
}

// rawOffer sends pc's offer on raw with tracks and returns the result's
// tracks by cid, or the error.
func rawOffer(t *testing.T, raw *rawPeer, pc *webrtc.PeerConnection, tracks string) (map[string]string, *protocol.Error) {
	t.Helper()
	sdp := offerGathered(t, pc)
	params, _ := json.Marshal(map[string]any{"sdp": sdp, "tracks": json.RawMessage(tracks)})
	_, resp := raw.request(protocol.MethodOffer, string(params))
	if resp.Error != nil {
		return nil, resp.Error
	}
	var res protocol.OfferResult
	if err := json.Unmarshal(resp.Result, &res); err != nil {
		t.Fatal(err)
	}
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: res.SDP}); err != nil {
		t.Fatal(err)
	}
	ids := map[string]string{}
	for _, tr := range res.Tracks {
		ids[tr.CID] = tr.ID
	}
	return ids, nil
}
