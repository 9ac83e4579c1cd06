package server_test

import (
	"encoding/json"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"
	"github.com/starling-rtc/starling/protocol"
)

// sdpSections splits an SDP into its session part and its media sections
// (each starting with "m="), lines without their CRLF.
func sdpSections(sdp string) [][]string {
	secs := [][]string{nil}
	for _, l := range strings.Split(strings.TrimRight(sdp, "\r\n"), "\r\n") {
		if strings.HasPrefix(l, "m=") {
			secs = append(secs, nil)
		}
		secs[len(secs)-1] = append(secs[len(secs)-1], l)
	}
	return secs
}

func joinSections(secs [][]string) string {
	var b strings.Builder
	for _, s := range secs {
		for _, l := range s {
			b.WriteString(l + "\r\n")
		}
	}
	return b.String()
}

var ssrcMsid = regexp.MustCompile(`^a=ssrc:\d+ (msid|mslabel|label):`)

// mungeMsid rewrites every section's msid the way other WHIP clients write
// it: "none" (no a=msid and no a=ssrc msid, as aiortc without a stream),
// "one" (a=msid:<track>, one token: RFC 8830 allows it), "last" (a=msid
// after the a=ssrc lines: SDP puts no order on attributes). The a=ssrc
// lines keep their cname.
func mungeMsid(sdp, how string) string {
	secs := sdpSections(sdp)
	for i := 1; i < len(secs); i++ {
		var kept, msid []string
		for _, l := range secs[i] {
			switch {
			case ssrcMsid.MatchString(l):
			case strings.HasPrefix(l, "a=msid:"):
				msid = append(msid, l)
			default:
				kept = append(kept, l)
			}
		}
		switch how {
		case "one":
			for j, l := range msid {
				f := strings.Fields(strings.TrimPrefix(l, "a=msid:"))
				msid[j] = "a=msid:" + f[len(f)-1]
			}
			kept = append(kept[:2:2], append(msid, kept[2:]...)...)
		case "last":
			kept = append(kept, msid...)
		}
		secs[i] = kept
	}
	return joinSections(secs)
}

// WHIP offers shaped as clients other than browsers write them publish
// their tracks all the same (docs/whip.md: "A media section without
// a=msid is given one by the server"; docs/PROTOCOL.md "msid"), and the
// server answers each a=setup with the other role (RFC 8842). An aiortc
// offer without msid, with a one-token msid or with the a=msid line after
// its a=ssrc lines used to connect and then publish nothing: pion named
// those tracks "" and the server dropped them as never announced.
func TestOutsiderWHIPOfferShapes(t *testing.T) {
	parallel(t)
	m := makeTestMedia(t)
	srv := startServer(t, nil)
	watcher := join(t, srv, "shapes", "watcher")

	cases := []struct {
		name      string
		munge     func(string) string
		wantSetup string
	}{
		{"no-msid", func(s string) string { return mungeMsid(s, "none") }, "active"},
		{"msid-one-token", func(s string) string { return mungeMsid(s, "one") }, "active"},
		{"msid-after-ssrc", func(s string) string { return mungeMsid(s, "last") }, "active"},
		{"setup-active", func(s string) string { return strings.ReplaceAll(s, "a=setup:actpass", "a=setup:active") }, "passive"},
		{"setup-passive", func(s string) string { return strings.ReplaceAll(s, "a=setup:actpass", "a=setup:passive") }, "active"},
	}
	for _, c := range cases {
		pc, video, audio := sendingPC(t, plainAPI(t, nil), webrtc.Configuration{BundlePolicy: webrtc.BundlePolicyMaxBundle}, "stream-"+c.name)
		offer := c.munge(offerGathered(t, pc))
		res := httpDo(t, http.MethodPost, "http://"+srv.Addr()+"/v1/rooms/shapes/whip?name="+c.name, "application/sdp", "", offer)
		if res.status != http.StatusCreated {
			t.Fatalf("%s: POST: %d %s\noffer:\n%s", c.name, res.status, res.body, offer)
		}
		if got := regexp.MustCompile(`a=setup:(\w+)`).FindAllStringSubmatch(res.body, -1); len(got) == 0 || got[0][1] != c.wantSetup {
			t.Errorf("%s: answer's setup %v, want %s", c.name, got, c.wantSetup)
		}
		if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: res.body}); err != nil {
			t.Fatalf("%s: applying the answer: %v", c.name, err)
		}
		stop := make(chan struct{})
		wg := sendMedia(t, m, video, audio, stop)
		t.Cleanup(func() { close(stop); wg.Wait() })

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

	// Bundle is always on (docs/PROTOCOL.md): an offer whose sections are
	// not bundled is refused in words, over WHIP and over the WebSocket.
	// It was answered as if bundled: aiortc's transport for the video
	// never connected, its audio alone published, the connection stayed
	// "connecting".
	pc, _, _ := sendingPC(t, plainAPI(t, nil), webrtc.Configuration{BundlePolicy: webrtc.BundlePolicyMaxBundle}, "stream-unbundled")
	unbundled := regexp.MustCompile(`a=group:BUNDLE[^\r]*\r\n`).ReplaceAllString(offerGathered(t, pc), "")
	res := httpDo(t, http.MethodPost, "http://"+srv.Addr()+"/v1/rooms/shapes/whip?name=unbundled", "application/sdp", "", unbundled)
	if res.status != http.StatusBadRequest || !strings.Contains(res.body, "bundle is required") {
		t.Errorf("WHIP offer without a=group:BUNDLE: %d %.200s, want 400 saying bundle is required", res.status, res.body)
	}
	raw := dialRaw(t, srv)
	if _, resp := raw.request(protocol.MethodJoin, `{"room":"shapes","name":"raw"}`); resp.Error != nil {
		t.Fatalf("join: %s", resp.Error.Message)
	}
	params, _ := json.Marshal(map[string]any{"sdp": unbundled, "tracks": []any{}})
	if _, resp := raw.request(protocol.MethodOffer, string(params)); resp.Error == nil || resp.Error.Code != protocol.CodeInvalidParams || !strings.Contains(resp.Error.Message, "bundle is required") {
		t.Errorf("offer without a=group:BUNDLE: %.200s, want -32602 saying bundle is required", msgString(resp))
	}
}
