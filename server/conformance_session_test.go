package server_test

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"
	"github.com/starling-rtc/starling/protocol"
)

// TestConformanceSession walks every method and notification of a call
// between two raw participants, in the order an outside client meets them:
// join (its result, then the first subscriber offer with the data channel),
// a trickled publisher offer, the other side's participantJoined,
// trackPublished and msid, setSubscription, mute, unsubscribe, subscribe,
// unpublish, leave and participantLeft.
func TestConformanceSession(t *testing.T) {
	parallel(t)
	srv := startServer(t, nil)

	// A joins with unknown extra fields (a newer client) and metadata.
	a := newConfPeer(t, dialRaw(t, srv))
	_, resp := a.request(protocol.MethodJoin, `{"room":"conf","name":"Ann","metadata":"{\"x\":1}","futureField":{"y":2}}`)
	res := jsonShape(t, "join result", resultOf(t, "join", resp), map[string]string{"participant": "object", "room": "object",
		"participants": "array", "iceServers": "array", "resumeToken": "string"})
	me := jsonShape(t, "join result participant", res["participant"], participantShape)
	room := jsonShape(t, "join result room", res["room"], map[string]string{"name": "string", "sid": "string"})
	if string(room["name"]) != `"conf"` || len(room["sid"]) < 3 {
		t.Errorf("join result room: %s", res["room"])
	}
	if string(me["name"]) != `"Ann"` || string(me["metadata"]) != `"{\"x\":1}"` || string(me["tracks"]) != "[]" {
		t.Errorf("join result participant: %s", res["participant"])
	}
	if string(res["participants"]) != "[]" || len(res["resumeToken"]) < 10 {
		t.Errorf("join result in an empty room: participants %s, resumeToken %s", res["participants"], res["resumeToken"])
	}
	var aID string
	_ = json.Unmarshal(me["id"], &aID)
	a.id = aID
	// The join result comes first, then the subscriber offer, with the data
	// channel and nothing else, bundled and rtcp-muxed.
	a.mu.Lock()
	first := a.msgs[0]
	a.mu.Unlock()
	if first.Method != "" {
		t.Fatalf("the first message after join is %s, not the join result", msgString(first))
	}
	offer := notified(t, a.rawPeer, protocol.MethodOffer, nil)
	var sdp protocol.SDPParams
	_ = json.Unmarshal(offer, &sdp)
	for _, want := range []string{"a=group:BUNDLE", "m=application", "webrtc-datachannel"} {
		if !strings.Contains(sdp.SDP, want) {
			t.Errorf("the first subscriber offer has no %q:\n%s", want, sdp.SDP)
		}
	}
	if strings.Contains(sdp.SDP, "m=audio") || strings.Contains(sdp.SDP, "m=video") {
		t.Errorf("the first subscriber offer in an empty room has media sections:\n%s", sdp.SDP)
	}
	a.serve(t)
	select {
	case l := <-a.labels:
		if l != protocol.DataChannelLabel {
			t.Errorf("the server's data channel is labelled %q, want %q", l, protocol.DataChannelLabel)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("the server's data channel never opened on the subscriber connection")
	}

	// B joins: A learns of it; B's join result lists A.
	b := newConfPeer(t, dialRaw(t, srv))
	_, resp = b.request(protocol.MethodJoin, `{"room":"conf","name":"Bob","autoSubscribe":true}`)
	bres := jsonShape(t, "B's join result", resultOf(t, "join", resp), map[string]string{"participants": "array", "participant": "object"})
	var others []json.RawMessage
	_ = json.Unmarshal(bres["participants"], &others)
	if len(others) != 1 {
		t.Fatalf("B's join result lists %d others, want A: %s", len(others), bres["participants"])
	}
	if o := jsonShape(t, "B's join result participants[0]", others[0], participantShape); string(o["id"]) != `"`+aID+`"` {
		t.Errorf("B's join result lists %s, want A %s", o["id"], aID)
	}
	var bID string
	_ = json.Unmarshal(jsonShape(t, "B", bres["participant"], participantShape)["id"], &bID)
	b.id = bID
	b.serve(t)
	pj := jsonShape(t, "participantJoined", notified(t, a.rawPeer, protocol.NotifyParticipantJoined, nil), map[string]string{"participant": "object"})
	if p := jsonShape(t, "participantJoined participant", pj["participant"], participantShape); string(p["id"]) != `"`+bID+`"` || string(p["name"]) != `"Bob"` {
		t.Errorf("participantJoined: %s", pj["participant"])
	}

	// B publishes video with a trickled offer (no gathering wait); the
	// result lists the track with the client's trackId as cid.
	video, err := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}, "v1", "bstream")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.pub.AddTransceiverFromTrack(video, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly}); err != nil {
		t.Fatal(err)
	}
	pubOffer, err := b.pub.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.pub.SetLocalDescription(pubOffer); err != nil {
		t.Fatal(err)
	}
	// "rtcp-mux is required": an offer without it is refused, in words.
	noMux, _ := json.Marshal(map[string]any{"sdp": strings.ReplaceAll(pubOffer.SDP, "a=rtcp-mux\r\n", ""), "tracks": []map[string]any{}})
	_, resp = b.request(protocol.MethodOffer, string(noMux))
	if resp.Error == nil || resp.Error.Code != protocol.CodeInvalidParams || !strings.Contains(resp.Error.Message, "rtcp-mux") {
		t.Errorf("an offer without rtcp-mux: %s, want -32602 saying rtcp-mux is required", msgString(resp))
	}
	params, _ := json.Marshal(map[string]any{"sdp": pubOffer.SDP, "tracks": []map[string]any{{"trackId": "v1", "source": "camera", "name": "cam"}}})
	_, resp = b.request(protocol.MethodOffer, string(params))
	ores := jsonShape(t, "offer result", resultOf(t, "offer", resp), map[string]string{"sdp": "string", "tracks": "array"})
	var tracks []json.RawMessage
	_ = json.Unmarshal(ores["tracks"], &tracks)
	if len(tracks) != 1 {
		t.Fatalf("offer result lists %d tracks, want 1: %s", len(tracks), ores["tracks"])
	}
	tr := jsonShape(t, "offer result track", tracks[0], trackShape)
	want := map[string]string{"cid": `"v1"`, "participantId": `"` + bID + `"`, "kind": `"video"`, "source": `"camera"`, "name": `"cam"`,
		"muted": "false", "codec": `"video/VP8"`, "simulcast": "false", "layers": "[]"}
	for f, v := range want {
		if string(tr[f]) != v {
			t.Errorf("offer result track %s = %s, want %s", f, tr[f], v)
		}
	}
	var trackID string
	_ = json.Unmarshal(tr["id"], &trackID)
	var answerSDP string
	_ = json.Unmarshal(ores["sdp"], &answerSDP)
	for _, w := range []string{"a=group:BUNDLE", "a=rtcp-mux", "a=setup:"} {
		if !strings.Contains(answerSDP, w) {
			t.Errorf("the server's answer has no %q:\n%s", w, answerSDP)
		}
	}
	if err := b.pub.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: answerSDP}); err != nil {
		t.Fatalf("the server's answer does not apply: %v", err)
	}
	close(b.pubAnswered)
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() { defer close(done); sendVideo(video, stop) }()
	t.Cleanup(func() { close(stop); <-done })

	// A: trackPublished with the same Track, then the track itself, whose
	// msid is "<participantId> <trackId>".
	tp := jsonShape(t, "trackPublished", notified(t, a.rawPeer, protocol.NotifyTrackPublished, nil), map[string]string{"track": "object"})
	if got := jsonShape(t, "trackPublished track", tp["track"], trackShape); string(got["id"]) != `"`+trackID+`"` || string(got["participantId"]) != `"`+bID+`"` {
		t.Errorf("trackPublished: %s, want track %s of %s", tp["track"], trackID, bID)
	}
	waitFor(t, 30*time.Second, "B's video at A", func() bool { return a.received(trackID) >= 30 }) // 15 s was short under -race at load 34
	if s, _ := a.streams.Load(trackID); s != bID {
		t.Errorf("A got track %s in stream %v, want msid %q", trackID, s, bID+" "+trackID)
	}
	msid := regexp.MustCompile(`a=msid:` + regexp.QuoteMeta(bID+" "+trackID) + `\r?\n`)
	a.subMu.Lock()
	subSDP := a.sub.RemoteDescription().SDP
	a.subMu.Unlock()
	if !msid.MatchString(subSDP) {
		t.Errorf("A's subscriber offer has no a=msid:%s %s:\n%s", bID, trackID, subSDP)
	}

	// setSubscription pauses; subscriptionUpdated says so.
	_, resp = a.request(protocol.MethodSetSubscription, fmt.Sprintf(`{"trackId":%q,"paused":true}`, trackID))
	wantEmpty(t, "setSubscription", resp)
	su := jsonShape(t, "subscriptionUpdated", notified(t, a.rawPeer, protocol.NotifySubscriptionUpdated, hasField("layer", "paused")),
		map[string]string{"trackId": "string", "layer": "string", "reason": "string?"})
	if string(su["trackId"]) != `"`+trackID+`"` {
		t.Errorf("subscriptionUpdated for %s, want %s", su["trackId"], trackID)
	}
	_, resp = a.request(protocol.MethodSetSubscription, fmt.Sprintf(`{"trackId":%q,"paused":false,"quality":"high","maxWidth":1280,"maxHeight":720}`, trackID))
	wantEmpty(t, "setSubscription resume", resp)

	// mute: trackUpdated with muted true reaches A.
	_, resp = b.request(protocol.MethodMute, fmt.Sprintf(`{"trackId":%q,"muted":true}`, trackID))
	wantEmpty(t, "mute", resp)
	tu := jsonShape(t, "trackUpdated", notified(t, a.rawPeer, protocol.NotifyTrackUpdated, nil), map[string]string{"track": "object"})
	if got := jsonShape(t, "trackUpdated track", tu["track"], trackShape); string(got["muted"]) != "true" {
		t.Errorf("trackUpdated after mute: %s", tu["track"])
	}
	_, resp = b.request(protocol.MethodMute, fmt.Sprintf(`{"trackId":%q,"muted":false}`, trackID))
	wantEmpty(t, "unmute", resp)

	_, resp = a.request(protocol.MethodUnsubscribe, fmt.Sprintf(`{"trackIds":[%q]}`, trackID))
	wantEmpty(t, "unsubscribe", resp)
	_, resp = a.request(protocol.MethodSubscribe, fmt.Sprintf(`{"trackIds":[%q]}`, trackID))
	wantEmpty(t, "subscribe", resp)
	_, resp = a.request(protocol.MethodSetAudioMix, `{"enabled":false}`)
	wantEmpty(t, "setAudioMix", resp)

	// unpublish: trackUnpublished {trackId, participantId}.
	_, resp = b.request(protocol.MethodUnpublish, fmt.Sprintf(`{"trackId":%q}`, trackID))
	wantEmpty(t, "unpublish", resp)
	tun := jsonShape(t, "trackUnpublished", notified(t, a.rawPeer, protocol.NotifyTrackUnpublished, nil),
		map[string]string{"trackId": "string", "participantId": "string"})
	if string(tun["trackId"]) != `"`+trackID+`"` || string(tun["participantId"]) != `"`+bID+`"` {
		t.Errorf("trackUnpublished: %v", tun)
	}

	// leave: {} first, then the close frame; A sees participantLeft.
	_, resp = b.request(protocol.MethodLeave, `{}`)
	wantEmpty(t, "leave", resp)
	if code, ok := b.closeCode(10 * time.Second); !ok || code != 1000 {
		t.Errorf("after leave the socket ended with %d (%v), want a close frame with 1000", code, ok)
	}
	pl := jsonShape(t, "participantLeft", notified(t, a.rawPeer, protocol.NotifyParticipantLeft, nil),
		map[string]string{"participantId": "string", "reason": "string"})
	if string(pl["participantId"]) != `"`+bID+`"` || string(pl["reason"]) != `"clientLeave"` {
		t.Errorf("participantLeft: %v", pl)
	}
	// A second join on the same socket: 409.
	if _, resp = a.request(protocol.MethodJoin, `{"room":"conf"}`); resp.Error == nil || resp.Error.Code != protocol.CodeConflict {
		t.Errorf("second join: %s, want 409", msgString(resp))
	}
}
