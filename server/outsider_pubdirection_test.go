package server_test

import (
	"encoding/json"
	"regexp"
	"testing"

	"github.com/pion/webrtc/v4"
	"github.com/starling-rtc/starling/protocol"
)

var directionLine = regexp.MustCompile(`a=(sendrecv|sendonly|recvonly|inactive)`)

// The server never sends on a publisher connection, and its answer says
// so: a section the client offers recvonly is answered inactive, and one
// that sends is answered recvonly, also when it began recvonly. pion
// answered sendonly, then sendrecv, and the client waited for media that
// would never come (a browser fires ontrack for such a section).
func TestOutsiderPublisherAnswerDirections(t *testing.T) {
	parallel(t)
	srv := startServer(t, nil)
	raw := dialRaw(t, srv)
	if _, resp := raw.request(protocol.MethodJoin, `{"room":"directions","name":"recvonly"}`); resp.Error != nil {
		t.Fatalf("join: %v", resp.Error)
	}
	pc := receivingPC(t, plainAPI(t, nil), webrtc.Configuration{})
	offer := func(what string) (protocol.OfferResult, []string) {
		t.Helper()
		params, _ := json.Marshal(map[string]any{"sdp": offerGathered(t, pc), "tracks": []any{}})
		_, resp := raw.request(protocol.MethodOffer, string(params))
		if resp.Error != nil {
			t.Fatalf("%s: offer: %v", what, resp.Error)
		}
		var res protocol.OfferResult
		if err := json.Unmarshal(resp.Result, &res); err != nil {
			t.Fatal(err)
		}
		if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: res.SDP}); err != nil {
			t.Fatalf("%s: applying the answer: %v", what, err)
		}
		return res, directionLine.FindAllString(res.SDP, -1)
	}
	res, dirs := offer("recvonly sections")
	if len(res.Tracks) != 0 || len(dirs) != 2 || dirs[0] != "a=inactive" || dirs[1] != "a=inactive" {
		t.Fatalf("recvonly sections: tracks %v, directions %v; want none, inactive twice", res.Tracks, dirs)
	}
	video, _ := mediaTracks(t, "later")
	if _, err := pc.AddTrack(video); err != nil {
		t.Fatal(err)
	}
	res, dirs = offer("a track added to a recvonly transceiver")
	if len(res.Tracks) != 1 || len(dirs) != 2 || dirs[0] != "a=recvonly" || dirs[1] != "a=inactive" {
		t.Fatalf("after AddTrack: tracks %v, directions %v; want one track, recvonly then inactive", res.Tracks, dirs)
	}
}
