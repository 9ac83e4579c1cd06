package server_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"
	"github.com/starling-rtc/starling/auth"
	"github.com/starling-rtc/starling/config"
	"github.com/starling-rtc/starling/server"
)

// sendOffer is an offer of a plain pion peer sending VP8 and Opus (never
// connected: the error tests only need its text).
func sendOffer(t testing.TB) string {
	t.Helper()
	return offerGathered(t, mustPC(t))
}

// recvOffer is a WHEP viewer's offer: recvonly audio and video.
func recvOffer(t testing.TB) string {
	t.Helper()
	return offerGathered(t, recvPC(t))
}

type httpCase struct {
	name, method, path, contentType, token, body string
	headers                                      []string
	status                                       int
	says                                         string // in the body, case-insensitive
}

func runCases(t *testing.T, srv *server.Server, cases []httpCase) {
	t.Helper()
	for _, c := range cases {
		res := httpDo(t, c.method, "http://"+srv.Addr()+c.path, c.contentType, c.token, c.body, c.headers...)
		if res.status != c.status {
			t.Errorf("%s: %s %s = %d %q, want %d", c.name, c.method, c.path, res.status, res.body, c.status)
			continue
		}
		if c.says != "" && !strings.Contains(strings.ToLower(res.body), strings.ToLower(c.says)) {
			t.Errorf("%s: body %q does not say %q", c.name, res.body, c.says)
		}
	}
}

// Every malformed or refused request gets its status and a message; the
// server keeps serving.
func TestWHIPErrors(t *testing.T) {
	parallel(t)
	srv := startServer(t, func(c *config.Config) { c.Limits.MaxParticipants = 2 })
	join(t, srv, "full", "one")
	offer := sendOffer(t)
	ok := postOffer(t, srv, "/v1/rooms/errs/whip", "", mustPC(t))
	sessionPath := strings.TrimPrefix(ok.location, "http://"+srv.Addr())
	long := strings.Repeat("r", 129)
	frag := "a=ice-ufrag:abcd\r\na=ice-pwd:efghijklmnopqrstuvwxyz12\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\na=candidate:1 1 udp 2130706431 127.0.0.1 9 typ host\r\n"
	realUfrag, realPwd := "", ""
	for _, l := range strings.Split(ok.pc.LocalDescription().SDP, "\n") {
		if v, found := strings.CutPrefix(strings.TrimSpace(l), "a=ice-ufrag:"); found && realUfrag == "" {
			realUfrag = v
		}
		if v, found := strings.CutPrefix(strings.TrimSpace(l), "a=ice-pwd:"); found && realPwd == "" {
			realPwd = v
		}
	}
	// If-Match: * with the session's own credentials is no ICE restart
	// (RFC 8839 restarts with a new ice-ufrag and ice-pwd): a trickle
	// whose precondition holds (RFC 9110 13.1.1), 204. It was answered
	// 200 with an sdpfrag, as if the server had restarted.
	starSame := "a=ice-ufrag:" + realUfrag + "\r\na=ice-pwd:" + realPwd + "\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\na=candidate:2 1 udp 2130706431 127.0.0.1 10 typ host\r\n"
	starHalf := "a=ice-ufrag:" + realUfrag + "\r\na=ice-pwd:" + strings.Repeat("p", 24) + "\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\n"
	trickle := "a=ice-ufrag:" + realUfrag + "\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\na=candidate:1 1 udp 2130706431 127.0.0.1 9 typ host\r\na=end-of-candidates\r\n"
	runCases(t, srv, []httpCase{
		{"wrong method", http.MethodGet, "/v1/rooms/errs/whip", "", "", "", nil, 405, "POST"},
		{"no content type", http.MethodPost, "/v1/rooms/errs/whip", "", "", offer, nil, 415, "application/sdp"},
		{"json body", http.MethodPost, "/v1/rooms/errs/whip", "application/json", "", "{}", nil, 415, "application/sdp"},
		{"empty offer", http.MethodPost, "/v1/rooms/errs/whip", "application/sdp", "", "", nil, 400, "empty"},
		{"not sdp", http.MethodPost, "/v1/rooms/errs/whip", "application/sdp", "", "hello, server", nil, 400, "does not parse"},
		{"recvonly to whip", http.MethodPost, "/v1/rooms/errs/whip", "application/sdp", "", recvOffer(t), nil, 400, "sends no audio or video"},
		{"too big", http.MethodPost, "/v1/rooms/errs/whip", "application/sdp", "", offer + strings.Repeat("a=x:y\r\n", 160000), nil, 413, "1 MiB"},
		{"long room", http.MethodPost, "/v1/rooms/" + long + "/whip", "application/sdp", "", offer, nil, 400, "longer than"},
		// docs/whip.md: the name is ?name=; one join would refuse was
		// silently replaced by "WHIP publisher" (201).
		{"long name", http.MethodPost, "/v1/rooms/errs/whip?name=" + strings.Repeat("n", 257), "application/sdp", "", offer, nil, 400, "?name= is longer than 256"},
		{"name with control", http.MethodPost, "/v1/rooms/errs/whip?name=a%00b", "application/sdp", "", offer, nil, 400, "control"},
		{"whep long name", http.MethodPost, "/v1/rooms/errs/whep?name=" + strings.Repeat("n", 257), "application/sdp", "", recvOffer(t), nil, 400, "?name="},
		{"whep no room", http.MethodPost, "/v1/rooms/nowhere/whep", "application/sdp", "", recvOffer(t), nil, 404, "does not exist"},
		{"whep no participant", http.MethodPost, "/v1/rooms/errs/whep?participant=nobody", "application/sdp", "", recvOffer(t), nil, 404, "nobody"},
		{"whep no track", http.MethodPost, "/v1/rooms/errs/whep?track=TR_nope", "application/sdp", "", recvOffer(t), nil, 404, "TR_nope"},
		{"whep sendonly offer", http.MethodPost, "/v1/rooms/errs/whep", "application/sdp", "", offer, nil, 400, "receives"},
		{"room full", http.MethodPost, "/v1/rooms/full/whip", "application/sdp", "", offer, nil, 201, ""},
		{"room full 2", http.MethodPost, "/v1/rooms/full/whip", "application/sdp", "", offer, nil, 503, "full"},
		{"unknown session", http.MethodDelete, "/v1/rooms/errs/whip/0123456789abcdef", "", "", "", nil, 404, "no such"},
		{"session of another room", http.MethodDelete, strings.Replace(sessionPath, "/errs/", "/other/", 1), "", "", "", nil, 404, "no such"},
		{"whep path for whip session", http.MethodDelete, strings.Replace(sessionPath, "/whip/", "/whep/", 1), "", "", "", nil, 404, "no such"},
		{"PUT session", http.MethodPut, sessionPath, "application/sdp", "", offer, nil, 405, "PATCH"},
		{"PATCH content type", http.MethodPatch, sessionPath, "application/sdp", "", frag, nil, 415, "trickle-ice-sdpfrag"},
		{"PATCH stale etag", http.MethodPatch, sessionPath, "application/trickle-ice-sdpfrag", "", trickle, []string{"If-Match", `"stale"`}, 412, "If-Match"},
		{"PATCH other ufrag", http.MethodPatch, sessionPath, "application/trickle-ice-sdpfrag", "", frag, nil, 422, "If-Match: *"},
		{"PATCH garbage", http.MethodPatch, sessionPath, "application/trickle-ice-sdpfrag", "", "hello", nil, 400, "sdpfrag"},
		{"PATCH bad candidate", http.MethodPatch, sessionPath, "application/trickle-ice-sdpfrag", "", "a=candidate:nonsense\r\n", nil, 400, "candidate"},
		{"PATCH restart without credentials", http.MethodPatch, sessionPath, "application/trickle-ice-sdpfrag", "", "a=candidate:1 1 udp 1 127.0.0.1 9 typ host\r\n", []string{"If-Match", "*"}, 400, "ice-ufrag"},
		{"PATCH star same credentials", http.MethodPatch, sessionPath, "application/trickle-ice-sdpfrag", "", starSame, []string{"If-Match", "*"}, 204, ""},
		{"PATCH star same ufrag new pwd", http.MethodPatch, sessionPath, "application/trickle-ice-sdpfrag", "", starHalf, []string{"If-Match", "*"}, 422, "new a=ice-ufrag"},
		{"PATCH etag list", http.MethodPatch, sessionPath, "application/trickle-ice-sdpfrag", "", trickle, []string{"If-Match", `"stale", ` + ok.etag}, 204, ""},
		{"PATCH weak etag", http.MethodPatch, sessionPath, "application/trickle-ice-sdpfrag", "", trickle, []string{"If-Match", "W/" + ok.etag}, 412, "If-Match"},
		{"PATCH trickle", http.MethodPatch, sessionPath, "application/trickle-ice-sdpfrag", "", trickle, []string{"If-Match", ok.etag}, 204, ""},
		{"OPTIONS endpoint", http.MethodOptions, "/v1/rooms/errs/whip", "", "", "", []string{"Origin", "http://" + srv.Addr()}, 204, ""},
		{"foreign origin", http.MethodPost, "/v1/rooms/errs/whip", "application/sdp", "", offer, []string{"Origin", "https://evil.example"}, 403, "allowed_origins"},
	})
	// CORS: the server's own origin gets the headers a browser needs.
	res := httpDo(t, http.MethodOptions, "http://"+srv.Addr()+"/v1/rooms/errs/whip", "", "", "", "Origin", "http://"+srv.Addr(), "Access-Control-Request-Method", "POST")
	if res.header.Get("Access-Control-Allow-Origin") != "http://"+srv.Addr() ||
		!strings.Contains(res.header.Get("Access-Control-Allow-Headers"), "Authorization") ||
		!strings.Contains(res.header.Get("Access-Control-Expose-Headers"), "Location") {
		t.Errorf("CORS preflight headers: %v", res.header)
	}
	// Still serving: a good session works and is counted.
	if n := srv.WHIP().Sessions(); n != 2 {
		t.Errorf("%d sessions, want 2 (errs and full)", n)
	}
	if res := httpDo(t, http.MethodDelete, ok.location, "", "", ""); res.status != http.StatusOK {
		t.Errorf("DELETE: %d", res.status)
	}
}

// mustPC is a plain peer sending VP8 and Opus.
func mustPC(t testing.TB) *webrtc.PeerConnection {
	t.Helper()
	pc, _, _ := sendingPC(t, plainAPI(t, nil), webrtc.Configuration{}, "s")
	return pc
}

// With API keys, WHIP and WHEP want a bearer token naming the room with the
// right grant; session requests want the same identity's token.
func TestWHIPTokens(t *testing.T) {
	parallel(t)
	srv := startServer(t, withKeys)
	yes, no := true, false
	pubTok := token(t, "encoder", auth.Grants{Room: "tv"}, time.Minute)
	otherRoom := token(t, "encoder", auth.Grants{Room: "radio"}, time.Minute)
	noPublish := token(t, "encoder", auth.Grants{Room: "tv", CanPublish: &no}, time.Minute)
	noSubscribe := token(t, "viewer", auth.Grants{Room: "tv", CanSubscribe: &no, CanPublish: &yes}, time.Minute)
	offer := sendOffer(t)
	runCases(t, srv, []httpCase{
		{"no token", http.MethodPost, "/v1/rooms/tv/whip", "application/sdp", "", offer, nil, 401, "Bearer"},
		{"garbage token", http.MethodPost, "/v1/rooms/tv/whip", "application/sdp", "abc.def.ghi", offer, nil, 401, "malformed"},
		{"other room", http.MethodPost, "/v1/rooms/tv/whip", "application/sdp", otherRoom, offer, nil, 403, "radio"},
		{"no publish grant", http.MethodPost, "/v1/rooms/tv/whip", "application/sdp", noPublish, offer, nil, 403, "publish"},
	})
	pub := postOffer(t, srv, "/v1/rooms/tv/whip", pubTok, mustPC(t))
	runCases(t, srv, []httpCase{
		{"whep no subscribe grant", http.MethodPost, "/v1/rooms/tv/whep", "application/sdp", noSubscribe, recvOffer(t), nil, 403, "subscribe"},
		{"whep no token", http.MethodPost, "/v1/rooms/tv/whep", "application/sdp", "", recvOffer(t), nil, 401, ""},
	})
	path := strings.TrimPrefix(pub.location, "http://"+srv.Addr())
	viewerTok := token(t, "viewer", auth.Grants{Room: "tv"}, time.Minute)
	if w := postOffer(t, srv, "/v1/rooms/tv/whep", viewerTok, recvPC(t)); w.location == "" {
		t.Fatal("no Location for WHEP")
	}
	runCases(t, srv, []httpCase{
		// Its message told an HTTP client to `join with a "token"`.
		{"DELETE without token", http.MethodDelete, path, "", "", "", nil, 401, "Authorization: Bearer"},
		{"PATCH without token", http.MethodPatch, path, "application/trickle-ice-sdpfrag", "", "a=end-of-candidates\r\n", nil, 401, "Authorization: Bearer"},
		{"DELETE by someone else", http.MethodDelete, path, "", viewerTok, "", nil, 403, "session"},
		{"DELETE by its publisher", http.MethodDelete, path, "", pubTok, "", nil, 200, ""},
	})
}

// recvPC is a plain WHEP viewer peer.
func recvPC(t testing.TB) *webrtc.PeerConnection {
	t.Helper()
	return receivingPC(t, plainAPI(t, nil), webrtc.Configuration{})
}
