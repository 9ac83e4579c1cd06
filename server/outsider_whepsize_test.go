package server_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/pion/webrtc/v4"
)

// A WHEP player that shows many videos offers many receive sections:
// Chromium writes about 5 KB per video section (16 are 80 KB, 64 are
// 320 KB; Firefox about 1.6 KB), and an offer may have 64 sections
// (docs/PROTOCOL.md). Such an offer was refused 413 above 64 KiB; WHIP and
// WHEP bodies now have the WebSocket's limit, 1 MiB.
func TestOutsiderWHEPManySections(t *testing.T) {
	parallel(t)
	srv := startServer(t, nil)
	join(t, srv, "grid", "host")
	pc := plainPC(t, plainAPI(t, nil), webrtc.Configuration{BundlePolicy: webrtc.BundlePolicyMaxBundle})
	if _, err := pc.AddTransceiverFromKind(webrtc.RTPCodecTypeAudio, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}); err != nil {
		t.Fatal(err)
	}
	for range 40 {
		if _, err := pc.AddTransceiverFromKind(webrtc.RTPCodecTypeVideo, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}); err != nil {
			t.Fatal(err)
		}
	}
	offer := offerGathered(t, pc)
	if len(offer) <= 64<<10 {
		t.Fatalf("the offer is %d bytes, want over 64 KiB", len(offer))
	}
	res := httpDo(t, http.MethodPost, "http://"+srv.Addr()+"/v1/rooms/grid/whep", "application/sdp", "", offer)
	if res.status != http.StatusCreated {
		t.Fatalf("a %d-byte WHEP offer with 41 sections: %d %s", len(offer), res.status, res.body)
	}
	if n := strings.Count(res.body, "\r\nm="); n != 41 {
		t.Errorf("the answer has %d media sections, want 41", n)
	}
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: res.body}); err != nil {
		t.Fatal(err)
	}
	big := httpDo(t, http.MethodPost, "http://"+srv.Addr()+"/v1/rooms/grid/whep", "application/sdp", "", offer+strings.Repeat("a=x:y\r\n", 160000))
	if big.status != http.StatusRequestEntityTooLarge || !strings.Contains(big.body, "1 MiB") {
		t.Errorf("a body over 1 MiB: %d %s, want 413", big.status, big.body)
	}
}
