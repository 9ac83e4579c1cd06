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

var hostCandidateIP = regexp.MustCompile(`(a=candidate:\S+ \d+ \S+ \d+ )127\.0\.0\.1( )`)

// Browsers hide their host addresses behind mDNS names (RFC 8445's
// "<uuid>.local"). The server resolves no names (docs/PROTOCOL.md
// "Candidates with names"): a .local candidate is taken without an error
// and left aside, and the client's checks, which reach the server, give it
// the client's address (peer reflexive); a candidate with another host name
// is refused in words, not looked up.
func TestOutsiderMDNSCandidates(t *testing.T) {
	parallel(t)
	m := makeTestMedia(t)
	srv := startServer(t, nil)
	watcher := join(t, srv, "mdns", "watcher")

	// A WHIP offer whose every candidate is a .local name publishes.
	pc, video, audio := sendingPC(t, plainAPI(t, nil), webrtc.Configuration{BundlePolicy: webrtc.BundlePolicyMaxBundle}, "stream-mdns")
	offer := hostCandidateIP.ReplaceAllString(offerGathered(t, pc), "${1}5f0c2a44-1b4e-4c1e-9b1a-2f3e4d5c6b7a.local${2}")
	if strings.Contains(offer, "127.0.0.1 ") || !strings.Contains(offer, ".local ") {
		t.Fatalf("offer not rewritten:\n%s", offer)
	}
	res := httpDo(t, http.MethodPost, "http://"+srv.Addr()+"/v1/rooms/mdns/whip?name=mdns", "application/sdp", "", offer)
	if res.status != http.StatusCreated {
		t.Fatalf("POST: %d %s", res.status, res.body)
	}
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: res.body}); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	wg := sendMedia(t, m, video, audio, stop)
	t.Cleanup(func() { close(stop); wg.Wait() })
	if _, err := watcher.WaitEvent(ctxT(t, 20*time.Second), protocol.NotifyTrackPublished, nil); err != nil {
		t.Fatalf("the mDNS-only publisher's track was never published: %v (connection %s)", err, pc.ConnectionState())
	}
	frag := "a=ice-ufrag:" + ufragLine.FindStringSubmatch(pc.LocalDescription().SDP)[1] + "\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\n" +
		"a=candidate:9 1 udp 2130706431 0d4c1e55-7e0b-4b8e-a1c9-3f1f0e2d6c5b.local 50000 typ host\r\n"
	if p := httpDo(t, http.MethodPatch, "http://"+srv.Addr()+res.header.Get("Location"), "application/trickle-ice-sdpfrag", "", frag); p.status != http.StatusNoContent {
		t.Errorf("PATCH with a .local candidate: %d %s, want 204", p.status, p.body)
	}

	// Over the WebSocket: .local candidates (host, TCP, a srflx's raddr)
	// get no error, a DNS name gets -32602.
	raw := dialRaw(t, srv)
	if _, resp := raw.request(protocol.MethodJoin, `{"room":"mdns","name":"raw"}`); resp.Error != nil {
		t.Fatal(resp.Error)
	}
	candidate := func(c string) string {
		b, _ := json.Marshal(map[string]any{"target": "subscriber", "candidate": map[string]any{"candidate": c, "sdpMid": "0"}})
		return string(b)
	}
	for _, c := range []string{
		"candidate:1 1 udp 2130706431 3c9e7d1a-5b2f-4e8a-9d6c-1a2b3c4d5e6f.local 50000 typ host",
		"candidate:2 1 tcp 1518280447 3c9e7d1a-5b2f-4e8a-9d6c-1a2b3c4d5e6f.local 9 typ host tcptype active",
		"candidate:3 1 udp 1686052607 192.0.2.7 50001 typ srflx raddr 3c9e7d1a-5b2f-4e8a-9d6c-1a2b3c4d5e6f.local rport 50000",
	} {
		raw.notify(protocol.MethodCandidate, candidate(c))
		raw.request(protocol.MethodPing, "{}") // fails the test if an error for the candidate comes first
	}
	raw.notify(protocol.MethodCandidate, candidate("candidate:4 1 udp 2130706431 starling.example 50000 typ host"))
	if resp, ok := raw.tryResponse(10 * time.Second); !ok || resp.Error == nil || resp.Error.Code != protocol.CodeInvalidParams {
		t.Errorf("a candidate with a DNS name: %+v, want -32602", resp)
	}
}
