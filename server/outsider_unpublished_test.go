package server_test

import (
	"fmt"
	"testing"
	"time"
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
