package server_test

import (
	"strings"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/starling-rtc/starling/client"
	"github.com/starling-rtc/starling/config"
)

// selectedLocalType is the candidate type this side uses on pc's selected pair.
func selectedLocalType(pc *webrtc.PeerConnection) string {
	sctp := pc.SCTP()
	if sctp == nil {
		return ""
	}
	pair, err := sctp.Transport().ICETransport().GetSelectedCandidatePair()
	if err != nil || pair == nil {
		return ""
	}
	return pair.Local.Typ.String()
}

// TestTURNRelayOnly: a client that may only use TURN relays (no host
// candidates) still publishes and receives media through the embedded
// TURN server.
func TestTURNRelayOnly(t *testing.T) {
	parallel(t)
	srv := startServer(t, func(c *config.Config) {
		c.TURN.Enabled = true
		c.TURN.Port = 0
	})
	if srv.TURN() == nil || srv.TURN().UDPPort() == 0 {
		t.Fatal("TURN server not running")
	}
	relayOnly := func(o *client.Options) { o.ICETransportPolicy = webrtc.ICETransportPolicyRelay }

	viewer := join(t, srv, "turn", "viewer", relayOnly)
	var turnURL string
	for _, s := range viewer.Join.ICEServers {
		for _, u := range s.URLs {
			if strings.HasPrefix(u, "turn:") && s.Username != "" && s.Credential != "" {
				turnURL = u
			}
		}
	}
	if turnURL == "" {
		t.Fatalf("join's iceServers have no TURN entry with credentials: %+v", viewer.Join.ICEServers)
	}
	rec := record(viewer)
	pub := join(t, srv, "turn", "pub", relayOnly)
	media := publishFake(t, pub)
	video, audio := media.track("video"), media.track("audio")
	deadline := time.Now().Add(20 * time.Second)
	for !(len(rec.payloads(video.ID)) > 30 && len(rec.payloads(audio.ID)) > 20) {
		if time.Now().After(deadline) {
			t.Fatalf("no media through the relay: viewer sub %s pub %s, pub pub %s sub %s; got video %d audio %d",
				viewer.Subscriber().ConnectionState(), viewer.Publisher().ConnectionState(),
				pub.Publisher().ConnectionState(), pub.Subscriber().ConnectionState(),
				len(rec.payloads(video.ID)), len(rec.payloads(audio.ID)))
		}
		time.Sleep(20 * time.Millisecond)
	}
	for name, pc := range map[string]*webrtc.PeerConnection{
		"viewer subscriber": viewer.Subscriber(), "viewer publisher": viewer.Publisher(),
		"pub publisher": pub.Publisher(), "pub subscriber": pub.Subscriber(),
	} {
		waitFor(t, 10*time.Second, name+" connected", func() bool {
			return pc.ConnectionState() == webrtc.PeerConnectionStateConnected && selectedLocalType(pc) != ""
		})
		if typ := selectedLocalType(pc); typ != "relay" {
			t.Errorf("%s uses a %q candidate, want relay", name, typ)
		}
	}
	if n := srv.TURN().Allocations(); n < 4 {
		t.Errorf("%d TURN allocations, want one per connection (4)", n)
	}
}
