package server_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"
)

// TestOutsiderNothingAfterTrackUnpublished: `trackUnpublished` ends a
// track for the client (docs/PROTOCOL.md); nothing about that track may
// follow it. A `subscribe` answered just before the publisher left had its
// subscription set up on the subscriber's loop only after the track was
// gone: the client got `subscriptionUpdated` for a track it had been told
// was unpublished. Several rounds, each subscribing at the instant the
// publisher leaves (the fault needs the leave to fall between the
// `subscribe` result and the loop's turn; most rounds hit it).
func TestOutsiderNothingAfterTrackUnpublished(t *testing.T) {
	parallel(t)
	srv := startServer(t, nil)
	const room = "after-unpublished"
	sub := outsiderDial(t, srv.SignalingURL())
	if _, e := sub.call(1, "join", map[string]any{"room": room, "name": "viewer", "autoSubscribe": false}); e != nil {
		t.Fatalf("join: %v", e)
	}
	id := 10.0
	for round := range 5 {
		pub := join(t, srv, room, fmt.Sprint("speaker-", round))
		media := publishFake(t, pub)
		video := media.track("video").ID
		sub.waitNote(t, "trackPublished", video)
		for _, method := range []string{"subscribe", "unsubscribe", "subscribe"} {
			id++
			sub.send(t, map[string]any{"jsonrpc": "2.0", "id": id, "method": method, "params": map[string]any{"trackIds": []string{video}}})
		}
		sub.until(t, id)
		if err := pub.Leave(ctxT(t, 10*time.Second)); err != nil {
			t.Fatal(err)
		}
		media.Stop()
		// Everything the leave caused is out before a later ping's answer
		// once participantLeft came; the subscriber's loop work too, since
		// its subscriptionUpdated would come at once.
		unpublished := false
		left := false
		for !left {
			m := sub.next(t)
			params, _ := m["params"].(map[string]any)
			switch m["method"] {
			case "trackUnpublished":
				unpublished = unpublished || params["trackId"] == video
			case "participantLeft":
				left = params["participantId"] == pub.ParticipantID()
			case "subscriptionUpdated":
				if unpublished && params["trackId"] == video {
					t.Errorf("round %d: subscriptionUpdated %v after the track's trackUnpublished", round, params)
				}
			}
		}
		id++
		sub.send(t, map[string]any{"jsonrpc": "2.0", "id": id, "method": "ping"})
		for _, m := range sub.until(t, id) {
			if params, _ := m["params"].(map[string]any); m["method"] == "subscriptionUpdated" && params["trackId"] == video {
				t.Errorf("round %d: subscriptionUpdated %v after the track's trackUnpublished", round, params)
			}
		}
	}
}

// TestOutsiderOfferTrackListedTwice: docs/PROTOCOL.md "What an offer
// publishes": `tracks` describes the offer's new tracks, each by the
// msid track id of the SDP. One trackId described twice (microphone, then
// camera) was published with the last description, silently; it is
// -32602 naming the id, and nothing of that offer is applied (the same
// offer with one description then publishes the track as described).
func TestOutsiderOfferTrackListedTwice(t *testing.T) {
	parallel(t)
	srv := startServer(t, nil)
	o := outsiderDial(t, srv.SignalingURL())
	if _, e := o.call(1, "join", map[string]any{"room": "twice"}); e != nil {
		t.Fatalf("join: %v", e)
	}
	pc := plainPC(t, plainAPI(t, nil), webrtc.Configuration{})
	mic, err := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2}, "mic-1", "s")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pc.AddTransceiverFromTrack(mic, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly}); err != nil {
		t.Fatal(err)
	}
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	_, e := o.call(2, "offer", map[string]any{"sdp": offer.SDP, "tracks": []any{
		map[string]any{"trackId": "mic-1", "source": "microphone"},
		map[string]any{"trackId": "mic-1", "source": "camera"},
	}})
	if e == nil || e["code"] != float64(-32602) || !strings.Contains(fmt.Sprint(e["message"]), "mic-1") {
		t.Fatalf("an offer describing trackId mic-1 twice: error %v, want -32602 naming it", e)
	}
	res, e := o.call(3, "offer", map[string]any{"sdp": offer.SDP, "tracks": []any{map[string]any{"trackId": "mic-1", "source": "microphone"}}})
	if e != nil {
		t.Fatalf("the same offer with one description: %v", e)
	}
	if tracks, _ := res["tracks"].([]any); len(tracks) != 1 || tracks[0].(map[string]any)["source"] != "microphone" {
		t.Errorf("published %v, want mic-1 as a microphone", res["tracks"])
	}
}
