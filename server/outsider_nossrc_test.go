package server_test

import (
	"encoding/json"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/rtp"
	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"
	"github.com/starling-rtc/starling/client"
	"github.com/starling-rtc/starling/protocol"
)

// midWriter is a client-side interceptor that puts the RTP MID header
// extension (RFC 8843) on every packet it sends, as browsers do and pion's
// sender does not: the mid of each SSRC is set once the transceivers have
// their mids.
type midWriter struct {
	interceptor.NoOp
	mu   sync.Mutex
	mids map[uint32]string
}

func (m *midWriter) NewInterceptor(string) (interceptor.Interceptor, error) { return m, nil }

func (m *midWriter) set(ssrc uint32, mid string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.mids == nil {
		m.mids = map[uint32]string{}
	}
	m.mids[ssrc] = mid
}

// sendWithMIDs tells mw the mid of each of pc's sending SSRCs (known once
// the answer is applied) and sends media on video and audio until the test
// ends.
func sendWithMIDs(t *testing.T, pc *webrtc.PeerConnection, mw *midWriter, m testMedia, video, audio *webrtc.TrackLocalStaticSample) {
	for _, tr := range pc.GetTransceivers() {
		if s := tr.Sender(); s != nil && len(s.GetParameters().Encodings) > 0 {
			mw.set(uint32(s.GetParameters().Encodings[0].SSRC), tr.Mid())
		}
	}
	stop := make(chan struct{})
	wg := sendMedia(t, m, video, audio, stop)
	t.Cleanup(func() { close(stop); wg.Wait() })
}

func (m *midWriter) BindLocalStream(info *interceptor.StreamInfo, w interceptor.RTPWriter) interceptor.RTPWriter {
	id := 0
	for _, e := range info.RTPHeaderExtensions {
		if e.URI == sdp.SDESMidURI {
			id = e.ID
		}
	}
	if id == 0 {
		return w
	}
	return interceptor.RTPWriterFunc(func(h *rtp.Header, payload []byte, a interceptor.Attributes) (int, error) {
		m.mu.Lock()
		mid := m.mids[h.SSRC]
		m.mu.Unlock()
		if mid != "" {
			_ = h.SetExtension(uint8(id), []byte(mid))
		}
		return w.Write(h, payload, a)
	})
}

// midAPI is a stock pion API on loopback that negotiates the MID header
// extension for audio too (pion registers it for video only; browsers
// offer it for both) and writes it through mw.
func midAPI(t *testing.T, mw *midWriter) *webrtc.API {
	t.Helper()
	m := &webrtc.MediaEngine{}
	if err := m.RegisterDefaultCodecs(); err != nil {
		t.Fatal(err)
	}
	if err := m.RegisterHeaderExtension(webrtc.RTPHeaderExtensionCapability{URI: sdp.SDESMidURI}, webrtc.RTPCodecTypeAudio); err != nil {
		t.Fatal(err)
	}
	ir := &interceptor.Registry{}
	ir.Add(mw)
	if err := webrtc.RegisterDefaultInterceptors(m, ir); err != nil {
		t.Fatal(err)
	}
	se := webrtc.SettingEngine{}
	se.SetIncludeLoopbackCandidate(true)
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	se.SetIPFilter(func(ip net.IP) bool { return ip.IsLoopback() })
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	se.SetICEMaxBindingRequests(client.ICECheckRetries)
	return webrtc.NewAPI(webrtc.WithMediaEngine(m), webrtc.WithInterceptorRegistry(ir), webrtc.WithSettingEngine(se))
}

// withoutSSRCLines drops every a=ssrc and a=ssrc-group line of an SDP: an
// offer that relies on the MID header extension alone to tell its streams
// apart (RFC 8843 and JSEP make a=ssrc optional), or, with dropMidExt, on
// the payload types alone (its sections' payload types do not overlap).
func withoutSSRCLines(s string, dropMidExt bool) string {
	var b strings.Builder
	for _, l := range strings.SplitAfter(s, "\n") {
		if strings.HasPrefix(l, "a=ssrc") || dropMidExt && strings.HasPrefix(l, "a=extmap:") && strings.Contains(l, sdp.SDESMidURI) {
			continue
		}
		b.WriteString(l)
	}
	return b.String()
}

// An offer with several media sections and no a=ssrc lines publishes its
// tracks (docs/PROTOCOL.md "msid"). pion places an undeclared stream only
// in an offer's only section, by its rid, or (when the MID extension is not
// negotiated) by payload type: a stream that carries a MID and no rid it
// gives up on after 10 packets, and such an offer published nothing.
func TestOutsiderOfferWithoutSSRC(t *testing.T) {
	parallel(t)
	m := makeTestMedia(t)
	srv := startServer(t, nil)
	watcher := join(t, srv, "nossrc", "watcher")

	for _, c := range []struct {
		name       string
		dropMidExt bool
	}{{"mid-only", false}, {"payload-type-only", true}} {
		mw := &midWriter{}
		pc, video, audio := sendingPC(t, midAPI(t, mw), webrtc.Configuration{BundlePolicy: webrtc.BundlePolicyMaxBundle}, "stream-"+c.name)
		offer := withoutSSRCLines(offerGathered(t, pc), c.dropMidExt)
		if strings.Contains(offer, "a=ssrc") {
			t.Fatalf("%s: offer still declares SSRCs:\n%s", c.name, offer)
		}
		res := httpDo(t, http.MethodPost, "http://"+srv.Addr()+"/v1/rooms/nossrc/whip?name="+c.name, "application/sdp", "", offer)
		if res.status != http.StatusCreated {
			t.Fatalf("%s: POST: %d %s\noffer:\n%s", c.name, res.status, res.body, offer)
		}
		if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: res.body}); err != nil {
			t.Fatalf("%s: applying the answer: %v", c.name, err)
		}
		if !c.dropMidExt && !strings.Contains(res.body, sdp.SDESMidURI) {
			t.Fatalf("%s: the answer does not negotiate the MID extension:\n%s", c.name, res.body)
		}
		sendWithMIDs(t, pc, mw, m, video, audio)

		joined, err := watcher.WaitEvent(ctxT(t, 20*time.Second), protocol.NotifyParticipantJoined, participantJoinedNamed(c.name))
		if err != nil {
			t.Fatalf("%s: participantJoined: %v", c.name, err)
		}
		var jp protocol.ParticipantParams
		_ = json.Unmarshal(joined.Params, &jp)
		kinds := map[string]bool{}
		for len(kinds) < 2 {
			ev, err := watcher.WaitEvent(ctxT(t, 20*time.Second), protocol.NotifyTrackPublished, func(raw json.RawMessage) bool {
				var tp protocol.TrackParams
				return json.Unmarshal(raw, &tp) == nil && tp.Track.ParticipantID == jp.Participant.ID && !kinds[tp.Track.Kind]
			})
			if err != nil {
				t.Fatalf("%s: trackPublished: %v (have %v); offer:\n%s", c.name, err, kinds, offer)
			}
			var tp protocol.TrackParams
			_ = json.Unmarshal(ev.Params, &tp)
			kinds[tp.Track.Kind] = true
		}
	}
}

// The same over the WebSocket, then a second offer (the client adds a
// data channel): the SSRCs placed by MID stay placed (the server declares
// them again in each offer whose section still declares none), the tracks
// keep their ids and their media keeps flowing.
func TestOutsiderOfferWithoutSSRCRenegotiates(t *testing.T) {
	parallel(t)
	m := makeTestMedia(t)
	srv := startServer(t, nil)
	watcher := join(t, srv, "nossrc-ws", "watcher")
	rec := record(watcher)
	raw := dialRaw(t, srv)
	if _, resp := raw.request(protocol.MethodJoin, `{"room":"nossrc-ws","name":"raw"}`); resp.Error != nil {
		t.Fatal(resp.Error)
	}
	mw := &midWriter{}
	pc, video, audio := sendingPC(t, midAPI(t, mw), webrtc.Configuration{BundlePolicy: webrtc.BundlePolicyMaxBundle}, "stream-ws")
	offer := func(what string) map[string]string {
		t.Helper()
		sdp := withoutSSRCLines(offerGathered(t, pc), false)
		params, _ := json.Marshal(map[string]any{"sdp": sdp, "tracks": []any{}})
		_, resp := raw.request(protocol.MethodOffer, string(params))
		if resp.Error != nil {
			t.Fatalf("%s: %v", what, resp.Error)
		}
		var res protocol.OfferResult
		_ = json.Unmarshal(resp.Result, &res)
		if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: res.SDP}); err != nil {
			t.Fatalf("%s: applying the answer: %v", what, err)
		}
		ids := map[string]string{}
		for _, tr := range res.Tracks {
			ids[tr.CID] = tr.ID
		}
		return ids
	}
	first := offer("first offer")
	sendWithMIDs(t, pc, mw, m, video, audio)
	waitFor(t, 20*time.Second, "both tracks at the watcher", func() bool {
		return len(rec.payloads(first["video"])) > 10 && len(rec.payloads(first["audio"])) > 10
	})

	if _, err := pc.CreateDataChannel("data", nil); err != nil {
		t.Fatal(err)
	}
	second := offer("second offer")
	if second["video"] != first["video"] || second["audio"] != first["audio"] {
		t.Fatalf("track ids changed: %v, then %v", first, second)
	}
	v, a := len(rec.payloads(first["video"])), len(rec.payloads(first["audio"]))
	waitFor(t, 20*time.Second, "media after the second offer", func() bool {
		return len(rec.payloads(first["video"])) > v+30 && len(rec.payloads(first["audio"])) > a+30
	})
}

// A WHIP ICE restart keeps the media of an offer without a=ssrc lines
// flowing, its streams placed by MID or by payload type (GStreamer 1.22's
// video: no a=ssrc, no header extensions). pion stopped a receiver placed
// by payload type at the restart (the restarted description did not name
// its SSRC): no packet after it.
func TestOutsiderOfferWithoutSSRCRestart(t *testing.T) {
	parallel(t)
	m := makeTestMedia(t)
	srv := startServer(t, nil)
	for _, c := range []struct {
		name    string
		dropMid bool
	}{{"mid", false}, {"pt", true}} {
		room := "rs-" + c.name
		watcher := join(t, srv, room, "watcher")
		sink := &mediaSink{dir: t.TempDir()}
		watcher.OnTrack(func(rt *client.RemoteTrack) { sink.start(t, rt.Track) })
		mw := &midWriter{}
		pc, video, audio := sendingPC(t, midAPI(t, mw), webrtc.Configuration{BundlePolicy: webrtc.BundlePolicyMaxBundle}, "s-"+c.name)
		offer := withoutSSRCLines(offerGathered(t, pc), c.dropMid)
		res := httpDo(t, http.MethodPost, "http://"+srv.Addr()+"/v1/rooms/"+room+"/whip", "application/sdp", "", offer)
		if res.status != http.StatusCreated {
			t.Fatalf("%s: POST %d %s", c.name, res.status, res.body)
		}
		if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: res.body}); err != nil {
			t.Fatal(err)
		}
		sendWithMIDs(t, pc, mw, m, video, audio)
		waitFor(t, 20*time.Second, c.name+" media before", func() bool { return sink.videoPackets.Load() >= 30 && sink.audioPackets.Load() >= 30 })

		ro, err := pc.CreateOffer(&webrtc.OfferOptions{ICERestart: true})
		if err != nil {
			t.Fatal(err)
		}
		g := webrtc.GatheringCompletePromise(pc)
		_ = pc.SetLocalDescription(ro)
		<-g
		pr := httpDo(t, http.MethodPatch, "http://"+srv.Addr()+res.header.Get("Location"), "application/trickle-ice-sdpfrag", "", restartFrag(pc.LocalDescription().SDP), "If-Match", "*")
		if pr.status != http.StatusOK {
			t.Fatalf("%s: restart PATCH %d %s", c.name, pr.status, pr.body)
		}
		ufrag := ufragLine.FindStringSubmatch(pr.body)
		pwd := pwdLine.FindStringSubmatch(pr.body)
		cands := candidateLine.FindAllString(pr.body, -1)
		answer := ufragLine.ReplaceAllString(res.body, "a=ice-ufrag:"+ufrag[1])
		answer = pwdLine.ReplaceAllString(answer, "a=ice-pwd:"+pwd[1])
		answer = candidateLine.ReplaceAllString(answer, "")
		answer = strings.Replace(answer, "a=mid:0\r\n", "a=mid:0\r\n"+strings.Join(trimAll(cands), "\r\n")+"\r\n", 1)
		if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: answer}); err != nil {
			t.Fatal(err)
		}
		v, a := sink.videoPackets.Load(), sink.audioPackets.Load()
		waitFor(t, 20*time.Second, c.name+": video and audio after the ICE restart", func() bool {
			return sink.videoPackets.Load() >= v+60 && sink.audioPackets.Load() >= a+60
		})
	}
}
