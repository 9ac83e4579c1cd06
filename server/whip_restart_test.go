package server_test

import (
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"
	"github.com/starling-rtc/starling/client"
	"github.com/starling-rtc/starling/protocol"
)

var (
	ufragLine     = regexp.MustCompile(`(?m)^a=ice-ufrag:(.*?)\r?$`)
	pwdLine       = regexp.MustCompile(`(?m)^a=ice-pwd:(.*?)\r?$`)
	candidateLine = regexp.MustCompile(`(?m)^a=candidate:.*?\r?$`)
)

// restartFrag is a client's ICE restart fragment (RFC 8840) from its new
// local description: new credentials and candidates on the first section.
func restartFrag(local string) string {
	var b strings.Builder
	b.WriteString("a=ice-ufrag:" + ufragLine.FindStringSubmatch(local)[1] + "\r\n")
	b.WriteString("a=ice-pwd:" + pwdLine.FindStringSubmatch(local)[1] + "\r\n")
	b.WriteString("m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:0\r\n")
	for _, c := range candidateLine.FindAllString(local, -1) {
		b.WriteString(strings.TrimSpace(c) + "\r\n")
	}
	b.WriteString("a=end-of-candidates\r\n")
	return b.String()
}

// An ICE restart over PATCH (If-Match: *): the server answers with new
// credentials and candidates and a new ETag, the client applies them to its
// previous answer, and media keeps flowing on the new ICE session.
func TestWHIPICERestart(t *testing.T) {
	parallel(t)
	m := makeTestMedia(t)
	srv := startServer(t, nil)
	watcher := join(t, srv, "restart", "watcher")
	sink := &mediaSink{dir: t.TempDir()}
	watcher.OnTrack(func(rt *client.RemoteTrack) { sink.start(t, rt.Track) })
	pub := publishWHIP(t, srv, "restart", "?name=restarter", "", m, nil)
	waitFor(t, 20*time.Second, "video before the restart", func() bool { return sink.videoPackets.Load() >= 30 })

	offer, err := pub.pc.CreateOffer(&webrtc.OfferOptions{ICERestart: true})
	if err != nil {
		t.Fatal(err)
	}
	gathered := webrtc.GatheringCompletePromise(pub.pc)
	if err := pub.pc.SetLocalDescription(offer); err != nil {
		t.Fatal(err)
	}
	<-gathered
	res := httpDo(t, http.MethodPatch, pub.location, "application/trickle-ice-sdpfrag", "",
		restartFrag(pub.pc.LocalDescription().SDP), "If-Match", "*")
	if res.status != http.StatusOK || res.header.Get("Content-Type") != "application/trickle-ice-sdpfrag" {
		t.Fatalf("restart PATCH: %d %q %s", res.status, res.header.Get("Content-Type"), res.body)
	}
	newTag := res.header.Get("ETag")
	if newTag == "" || newTag == pub.etag {
		t.Fatalf("ETag after restart %q, before %q: want a new one", newTag, pub.etag)
	}
	oldUfrag := ufragLine.FindStringSubmatch(pub.answer)[1]
	ufrag := ufragLine.FindStringSubmatch(res.body)
	pwd := pwdLine.FindStringSubmatch(res.body)
	cands := candidateLine.FindAllString(res.body, -1)
	if ufrag == nil || pwd == nil || len(cands) == 0 || ufrag[1] == oldUfrag {
		t.Fatalf("restart answer fragment lacks new credentials or candidates:\n%s", res.body)
	}
	// The previous answer with the server's new ICE session.
	answer := ufragLine.ReplaceAllString(pub.answer, "a=ice-ufrag:"+ufrag[1])
	answer = pwdLine.ReplaceAllString(answer, "a=ice-pwd:"+pwd[1])
	answer = candidateLine.ReplaceAllString(answer, "")
	answer = strings.Replace(answer, "a=mid:0\r\n", "a=mid:0\r\n"+strings.Join(trimAll(cands), "\r\n")+"\r\n", 1)
	if err := pub.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: answer}); err != nil {
		t.Fatalf("applying the restarted answer: %v", err)
	}
	before := sink.videoPackets.Load()
	waitFor(t, 20*time.Second, "video after the restart", func() bool { return sink.videoPackets.Load() >= before+60 })
	if pair, err := pub.pc.GetSenders()[0].Transport().ICETransport().GetSelectedCandidatePair(); err != nil || pair == nil {
		t.Errorf("no selected pair after the restart: %v", err)
	}
	// The server's side now runs on the client's new credentials.
	rm := srv.Rooms().Room("restart")
	var restarted bool
	for _, info := range rm.Participants() {
		if info.Name == "restarter" {
			got, _ := rm.Participant(info.ID).RemoteICE(protocol.TargetPublisher)
			restarted = got == ufragLine.FindStringSubmatch(pub.pc.LocalDescription().SDP)[1]
		}
	}
	if !restarted {
		t.Error("the server's publisher connection does not use the client's new ICE credentials")
	}
	// The old entity tag no longer names the ICE session.
	stale := httpDo(t, http.MethodPatch, pub.location, "application/trickle-ice-sdpfrag", "",
		"a=ice-ufrag:"+ufragLine.FindStringSubmatch(pub.pc.LocalDescription().SDP)[1]+"\r\n", "If-Match", pub.etag)
	if stale.status != http.StatusPreconditionFailed {
		t.Errorf("PATCH with the pre-restart ETag: %d, want 412", stale.status)
	}
}

func trimAll(in []string) []string {
	out := make([]string, len(in))
	for i, s := range in {
		out[i] = strings.TrimSpace(s)
	}
	return out
}
