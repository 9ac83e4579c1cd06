package server_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"
	"github.com/starling-rtc/starling/client"
	"github.com/starling-rtc/starling/internal/testutil"
)

// A client may take either DTLS role (RFC 8842): a subscriber that
// answers the server's offers with a=setup:passive (the server is then the
// DTLS client, and its own encryption path steps aside for pion's) gets
// media, and a re-offer works; a WHEP player whose offer says
// a=setup:passive or a=setup:active gets the other role and media.
func TestOutsiderDTLSRoles(t *testing.T) {
	parallel(t)
	m := makeTestMedia(t)
	srv := startServer(t, nil)
	passive := testutil.PlainAPI(t, nil, func(se *webrtc.SettingEngine) {
		if err := se.SetAnsweringDTLSRole(webrtc.DTLSRoleServer); err != nil {
			t.Fatal(err)
		}
	})
	sub := join(t, srv, "dtlsroles", "sub", func(o *client.Options) { o.API = passive })
	rec := record(sub)
	f := publishFake(t, join(t, srv, "dtlsroles", "pub"))
	defer f.Stop()
	waitFor(t, 20*time.Second, "media at the passive subscriber", func() bool {
		return len(rec.payloads(f.track("video").ID)) > 30 && len(rec.payloads(f.track("audio").ID)) > 30
	})
	f2 := publishFake(t, join(t, srv, "dtlsroles", "pub2"))
	defer f2.Stop()
	waitFor(t, 20*time.Second, "a second publisher's media at the passive subscriber (a re-offer)", func() bool {
		return len(rec.payloads(f2.track("video").ID)) > 30
	})

	publishWHIP(t, srv, "dtlsroles", "?name=speaker", "", m, nil)
	for _, c := range []struct{ setup, want string }{{"passive", "active"}, {"active", "passive"}} {
		sink := &mediaSink{dir: t.TempDir()}
		pc := receivingPC(t, plainAPI(t, nil), webrtc.Configuration{BundlePolicy: webrtc.BundlePolicyMaxBundle})
		pc.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) { sink.start(t, tr) })
		// pion's client takes the role the answer leaves it.
		offer := strings.ReplaceAll(offerGathered(t, pc), "a=setup:actpass", "a=setup:"+c.setup)
		res := httpDo(t, http.MethodPost, "http://"+srv.Addr()+"/v1/rooms/dtlsroles/whep?participant=speaker", "application/sdp", "", offer)
		if res.status != http.StatusCreated || !strings.Contains(res.body, "a=setup:"+c.want) {
			t.Fatalf("WHEP offer with setup %s: %d, want 201 with setup %s:\n%s", c.setup, res.status, c.want, res.body)
		}
		if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: res.body}); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 20*time.Second, "media at the WHEP player with setup "+c.setup, func() bool {
			return sink.videoPackets.Load() >= 30 && sink.audioPackets.Load() >= 30
		})
	}
}
