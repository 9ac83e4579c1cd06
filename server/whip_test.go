package server_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"
	"github.com/starling-rtc/starling/client"
	"github.com/starling-rtc/starling/config"
	"github.com/starling-rtc/starling/internal/testutil"
	"github.com/starling-rtc/starling/protocol"
	"github.com/starling-rtc/starling/server"
)

// whipPublisher is a plain pion peer publishing real VP8 and Opus over WHIP.
type whipPublisher struct {
	*whipSession
	stop chan struct{}
}

func publishWHIP(t testing.TB, srv *server.Server, roomName, query, token string, m testMedia, vanish *atomic.Bool) *whipPublisher {
	t.Helper()
	pc, video, audio := sendingPC(t, plainAPI(t, vanish), webrtc.Configuration{BundlePolicy: webrtc.BundlePolicyMaxBundle}, "whip-stream")
	s := postOffer(t, srv, "/v1/rooms/"+roomName+"/whip"+query, token, pc)
	p := &whipPublisher{whipSession: s, stop: make(chan struct{})}
	wg := sendMedia(t, m, video, audio, p.stop)
	t.Cleanup(func() { p.halt(); wg.Wait() })
	return p
}

func (p *whipPublisher) halt() {
	select {
	case <-p.stop:
	default:
		close(p.stop)
	}
}

// watchWHEP is a plain pion viewer: one recvonly audio and one recvonly
// video section, recording what arrives.
func watchWHEP(t testing.TB, srv *server.Server, roomName, query, token string, sink *mediaSink) *whipSession {
	t.Helper()
	pc := receivingPC(t, plainAPI(t, nil), webrtc.Configuration{BundlePolicy: webrtc.BundlePolicyMaxBundle})
	pc.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) { sink.start(t, tr) })
	return postOffer(t, srv, "/v1/rooms/"+roomName+"/whep"+query, token, pc)
}

func participantJoinedNamed(name string) func(json.RawMessage) bool {
	return func(raw json.RawMessage) bool {
		var p protocol.ParticipantParams
		return json.Unmarshal(raw, &p) == nil && p.Participant.Name == name
	}
}

// A WHIP publisher is a participant like any other: a Starling client sees
// it join and publish camera and microphone, and decodes its media.
func TestWHIPPublishWatchedByClient(t *testing.T) {
	parallel(t)
	m := makeTestMedia(t)
	srv := startServer(t, nil)
	watcher := join(t, srv, "whip", "watcher")
	sink := &mediaSink{dir: t.TempDir()}
	watcher.OnTrack(func(rt *client.RemoteTrack) { sink.start(t, rt.Track) })

	pub := publishWHIP(t, srv, "whip", "?name=obs", "", m, nil)
	if links := pub.res.header.Values("Link"); len(links) != 0 {
		t.Errorf("Link headers %q with no ICE servers configured", links)
	}
	if pub.etag == "" || pub.res.header.Get("Accept-Patch") != "application/trickle-ice-sdpfrag" {
		t.Errorf("ETag %q, Accept-Patch %q", pub.etag, pub.res.header.Get("Accept-Patch"))
	}
	joined, err := watcher.WaitEvent(ctxT(t, 10*time.Second), protocol.NotifyParticipantJoined, participantJoinedNamed("obs"))
	if err != nil {
		t.Fatalf("participantJoined: %v", err)
	}
	var jp protocol.ParticipantParams
	_ = json.Unmarshal(joined.Params, &jp)
	sources := map[string]bool{}
	for len(sources) < 2 {
		ev, err := watcher.WaitEvent(ctxT(t, 10*time.Second), protocol.NotifyTrackPublished, func(raw json.RawMessage) bool {
			var tp protocol.TrackParams
			return json.Unmarshal(raw, &tp) == nil && tp.Track.ParticipantID == jp.Participant.ID && !sources[tp.Track.Source]
		})
		if err != nil {
			t.Fatalf("trackPublished: %v (have %v)", err, sources)
		}
		var tp protocol.TrackParams
		_ = json.Unmarshal(ev.Params, &tp)
		sources[tp.Track.Source] = true
	}
	if !sources[protocol.SourceCamera] || !sources[protocol.SourceMicrophone] {
		t.Fatalf("WHIP tracks published as %v, want camera and microphone", sources)
	}
	metrics := httpDo(t, http.MethodGet, "http://"+srv.Addr()+"/metrics", "", "", "").body
	for _, want := range []string{`starling_whip_sessions{kind="whip"} 1`, `starling_whip_requests_total{kind="whip",method="POST",status="201"} 1`} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	waitFor(t, 20*time.Second, "60 video and 100 audio packets at the Starling client", func() bool {
		return sink.videoPackets.Load() >= 60 && sink.audioPackets.Load() >= 100
	})

	// DELETE ends the session: the others see it leave; the resource is gone.
	if res := httpDo(t, http.MethodDelete, pub.location, "", "", ""); res.status != http.StatusOK {
		t.Fatalf("DELETE: %d %s", res.status, res.body)
	}
	if _, err := watcher.WaitEvent(ctxT(t, 10*time.Second), protocol.NotifyParticipantLeft, hasParam("participantId", jp.Participant.ID)); err != nil {
		t.Fatalf("participantLeft after DELETE: %v", err)
	}
	if res := httpDo(t, http.MethodDelete, pub.location, "", "", ""); res.status != http.StatusNotFound {
		t.Errorf("second DELETE: %d, want 404", res.status)
	}
	watcher.Close()
	for _, f := range sink.filesOf("video") {
		if n := testutil.DecodedFrames(t, f); n < 30 {
			t.Errorf("%s: ffprobe decoded %d video frames, want >= 30", f, n)
		}
	}
	for _, f := range sink.filesOf("audio") {
		if n := testutil.DecodedFrames(t, f); n < 50 {
			t.Errorf("%s: ffprobe decoded %d audio frames, want >= 50", f, n)
		}
	}
	if srv.WHIP().Sessions() != 0 {
		t.Errorf("%d sessions left", srv.WHIP().Sessions())
	}
}

// A WHEP viewer watches the room's publisher, decodes it, and follows it
// when it publishes again (here: a new WHIP session) without any
// renegotiation: the same media sections carry the new tracks.
func TestWHEPWatchesAndFollowsPublisher(t *testing.T) {
	parallelLong(t)
	m := makeTestMedia(t)
	srv := startServer(t, nil)
	observer := join(t, srv, "live", "observer")
	first := publishWHIP(t, srv, "live", "?name=speaker", "", m, nil)
	// Announced on the first packet, once the WHIP connection is up: over
	// 10 s on a saturated machine (CI, load 47).
	if _, err := observer.WaitEvent(ctxT(t, 30*time.Second), protocol.NotifyTrackPublished, nil); err != nil {
		t.Fatal(err)
	}

	sink := &mediaSink{dir: t.TempDir()}
	viewer := watchWHEP(t, srv, "live", "?name=viewer", "", sink)
	if ev, err := observer.WaitEvent(ctxT(t, 10*time.Second), protocol.NotifyParticipantJoined, participantJoinedNamed("viewer")); err != nil {
		t.Fatalf("WHEP viewer not seen as a participant: %v", err)
	} else {
		_ = ev
	}
	waitFor(t, 20*time.Second, "video and audio at the WHEP viewer", func() bool {
		return sink.videoPackets.Load() >= 60 && sink.audioPackets.Load() >= 100
	})

	// The publisher goes and comes back as a new session.
	if res := httpDo(t, http.MethodDelete, first.location, "", "", ""); res.status != http.StatusOK {
		t.Fatalf("DELETE: %d", res.status)
	}
	first.halt()
	before := sink.videoPackets.Load()
	publishWHIP(t, srv, "live", "?name=speaker", "", m, nil)
	waitFor(t, 20*time.Second, "video from the second publisher at the WHEP viewer", func() bool {
		return sink.videoPackets.Load() >= before+60
	})
	if res := httpDo(t, http.MethodDelete, viewer.location, "", "", ""); res.status != http.StatusOK {
		t.Fatalf("DELETE viewer: %d", res.status)
	}
	_ = viewer.pc.Close()
	videos := sink.filesOf("video")
	if len(videos) != 1 {
		t.Fatalf("viewer got %d video tracks, want 1 (the section is reused)", len(videos))
	}
	n := testutil.DecodedFrames(t, videos[0])
	t.Logf("WHEP viewer: %d video packets, ffprobe decoded %d frames across the publisher switch", sink.videoPackets.Load(), n)
	if n < 60 {
		t.Errorf("ffprobe decoded %d frames of the WHEP video, want >= 60", n)
	}
	for _, f := range sink.filesOf("audio") {
		if n := testutil.DecodedFrames(t, f); n < 50 {
			t.Errorf("%s: ffprobe decoded %d audio frames, want >= 50", f, n)
		}
	}
}

// A WHIP client that vanishes (no DELETE, no DTLS close) is removed once
// ICE consent fails, and its session resource is gone.
func TestWHIPVanishedSessionCleanedUp(t *testing.T) {
	parallelLong(t)
	m := makeTestMedia(t)
	srv := startServer(t, func(c *config.Config) { c.RTC.ICEFailedTimeout = config.Duration(6 * time.Second) })
	watcher := join(t, srv, "gone", "watcher")
	var off atomic.Bool
	pub := publishWHIP(t, srv, "gone", "?name=flaky", "", m, &off)
	ev, err := watcher.WaitEvent(ctxT(t, 10*time.Second), protocol.NotifyParticipantJoined, participantJoinedNamed("flaky"))
	if err != nil {
		t.Fatal(err)
	}
	var jp protocol.ParticipantParams
	_ = json.Unmarshal(ev.Params, &jp)
	if _, err := watcher.WaitEvent(ctxT(t, 10*time.Second), protocol.NotifyTrackPublished, nil); err != nil {
		t.Fatal(err)
	}
	off.Store(true) // the network is gone
	pub.halt()
	// ICE consent: disconnected after 3 s of silence, failed 3 s later.
	start := time.Now()
	if _, err := watcher.WaitEvent(ctxT(t, 60*time.Second), protocol.NotifyParticipantLeft, hasParam("participantId", jp.Participant.ID)); err != nil {
		t.Fatalf("vanished WHIP participant never left: %v", err)
	}
	t.Logf("vanished WHIP participant left %v after its network went silent", time.Since(start).Round(100*time.Millisecond))
	waitFor(t, 5*time.Second, "the session to be forgotten", func() bool { return srv.WHIP().Sessions() == 0 })
	if res := httpDo(t, http.MethodDelete, pub.location, "", "", ""); res.status != http.StatusNotFound {
		t.Errorf("DELETE after cleanup: %d, want 404", res.status)
	}
}

// parseLinks reads RFC 9725 Link headers into ICE servers.
func parseLinks(values []string) []webrtc.ICEServer {
	var out []webrtc.ICEServer
	for _, v := range values {
		for _, link := range strings.Split(v, ",") {
			parts := strings.Split(link, ";")
			u := strings.Trim(strings.TrimSpace(parts[0]), "<>")
			s := webrtc.ICEServer{URLs: []string{u}}
			rel := false
			for _, p := range parts[1:] {
				k, val, _ := strings.Cut(strings.TrimSpace(p), "=")
				val = strings.Trim(val, `"`)
				switch k {
				case "rel":
					rel = val == "ice-server"
				case "username":
					s.Username = val
				case "credential":
					s.Credential = val
				}
			}
			if rel {
				out = append(out, s)
			}
		}
	}
	return out
}

// The Link headers carry the embedded TURN server with credentials that
// work: a WHIP client allowed only relayed candidates publishes through it.
func TestWHIPLinkHeadersTURN(t *testing.T) {
	parallel(t)
	m := makeTestMedia(t)
	srv := startServer(t, func(c *config.Config) {
		c.TURN.Enabled = true
		c.TURN.Port = 0
	})
	watcher := join(t, srv, "relay", "watcher")
	sink := &mediaSink{dir: t.TempDir()}
	watcher.OnTrack(func(rt *client.RemoteTrack) { sink.start(t, rt.Track) })

	probe := postOffer(t, srv, "/v1/rooms/relay/whip", "", mustPC(t))
	servers := parseLinks(probe.res.header.Values("Link"))
	var turn []webrtc.ICEServer
	for _, s := range servers {
		if strings.HasPrefix(s.URLs[0], "turn:") && s.Username != "" && s.Credential != nil {
			turn = append(turn, s)
		}
	}
	if len(turn) == 0 {
		t.Fatalf("no TURN server with credentials in Link headers %q", probe.res.header.Values("Link"))
	}
	_ = httpDo(t, http.MethodDelete, probe.location, "", "", "")

	pc, video, audio := sendingPC(t, plainAPI(t, nil), webrtc.Configuration{ICEServers: turn, ICETransportPolicy: webrtc.ICETransportPolicyRelay}, "relayed")
	postOffer(t, srv, "/v1/rooms/relay/whip", "", pc)
	stop := make(chan struct{})
	wg := sendMedia(t, m, video, audio, stop)
	defer func() { close(stop); wg.Wait() }()
	waitFor(t, 20*time.Second, "relayed WHIP video at the watcher", func() bool { return sink.videoPackets.Load() >= 30 })
	pair, err := pc.GetSenders()[0].Transport().ICETransport().GetSelectedCandidatePair()
	if err != nil || pair == nil {
		t.Fatalf("no selected candidate pair: %v", err)
	}
	if pair.Local.Typ != webrtc.ICECandidateTypeRelay {
		t.Errorf("selected local candidate is %s, want relay", pair.Local.Typ)
	}
}

// A client that POSTs an offer and never connects (no candidates, no
// answer applied) does not leave a participant behind: ICE fails and it
// leaves.
func TestWHIPNeverConnectedCleanedUp(t *testing.T) {
	parallel(t)
	srv := startServer(t, func(c *config.Config) { c.RTC.ICEFailedTimeout = config.Duration(6 * time.Second) })
	watcher := join(t, srv, "never", "watcher")
	pc := mustPC(t)
	// Nor candidates: a trickling client that never sent one.
	var lines []string
	for _, l := range strings.Split(offerGathered(t, pc), "\r\n") {
		if !strings.HasPrefix(l, "a=candidate:") && l != "a=end-of-candidates" {
			lines = append(lines, l)
		}
	}
	res := httpDo(t, http.MethodPost, "http://"+srv.Addr()+"/v1/rooms/never/whip?name=ghost", "application/sdp", "", strings.Join(lines, "\r\n"))
	if res.status != http.StatusCreated {
		t.Fatalf("POST: %d %s", res.status, res.body)
	}
	_ = pc.Close() // gone before connecting
	ev, err := watcher.WaitEvent(ctxT(t, 10*time.Second), protocol.NotifyParticipantJoined, participantJoinedNamed("ghost"))
	if err != nil {
		t.Fatal(err)
	}
	var jp protocol.ParticipantParams
	_ = json.Unmarshal(ev.Params, &jp)
	start := time.Now()
	if _, err := watcher.WaitEvent(ctxT(t, 60*time.Second), protocol.NotifyParticipantLeft, hasParam("participantId", jp.Participant.ID)); err != nil {
		t.Fatalf("a WHIP participant that never connected stayed: %v", err)
	}
	t.Logf("never-connected WHIP participant left after %v", time.Since(start).Round(100*time.Millisecond))
	waitFor(t, 5*time.Second, "the session to be forgotten", func() bool { return srv.WHIP().Sessions() == 0 })
}
