package whip

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/pion/webrtc/v4"
	"github.com/starling-rtc/starling/room"
	"github.com/starling-rtc/starling/sfu"
	"github.com/starling-rtc/starling/signaling"
)

// newTestHandler is a Handler over a real engine and room manager on loopback.
func newTestHandler(t *testing.T, limiter *signaling.IPLimiter) (*Handler, *http.ServeMux) {
	t.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	engine, err := sfu.NewEngine(sfu.EngineConfig{BindIP: "127.0.0.1", TCPPort: -1, LoopbackCandidates: true, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	rooms := room.NewManager(room.Config{Engine: engine, Logger: log})
	t.Cleanup(func() {
		_ = rooms.Shutdown(t.Context())
		engine.Close()
	})
	h := New(Options{Rooms: rooms, Limiter: limiter, Logger: log})
	mux := http.NewServeMux()
	h.Register(mux)
	return h, mux
}

func sendingOffer(t *testing.T) string {
	t.Helper()
	pc, err := webrtc.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pc.Close() })
	if _, err := pc.AddTransceiverFromKind(webrtc.RTPCodecTypeVideo, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly}); err != nil {
		t.Fatal(err)
	}
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	return offer.SDP
}

// New sessions count against the per-IP join rate: beyond it, 429 with
// Retry-After (loopback clients are exempt, so this test speaks as
// 192.0.2.1, httptest's default remote address).
func TestRateLimited(t *testing.T) {
	h, mux := newTestHandler(t, signaling.NewIPLimiter(0.001, 1))
	offer := sendingOffer(t)
	post := func() *httptest.ResponseRecorder {
		req := httptest.NewRequest(http.MethodPost, "/v1/rooms/rate/whip", strings.NewReader(offer))
		req.Header.Set("Content-Type", "application/sdp")
		w := httptest.NewRecorder()
		mux.ServeHTTP(w, req)
		return w
	}
	if w := post(); w.Code != http.StatusCreated {
		t.Fatalf("first POST: %d %s", w.Code, w.Body)
	}
	w := post()
	if w.Code != http.StatusTooManyRequests || w.Header().Get("Retry-After") == "" {
		t.Fatalf("second POST: %d (Retry-After %q), want 429", w.Code, w.Header().Get("Retry-After"))
	}
	if h.Sessions() != 1 {
		t.Fatalf("%d sessions, want 1", h.Sessions())
	}
}

func TestParseFrag(t *testing.T) {
	f, e := parseFrag("a=ice-ufrag:u1\r\na=ice-pwd:p1\r\nm=audio 9 UDP/TLS/RTP/SAVPF 0\r\na=mid:a0\r\na=candidate:1 1 udp 1 127.0.0.1 5000 typ host\r\na=end-of-candidates\r\n")
	if e != nil {
		t.Fatal(e)
	}
	if f.ufrag != "u1" || f.pwd != "p1" || len(f.candidates) != 1 || f.candidates[0].mid != "a0" ||
		f.candidates[0].line != "candidate:1 1 udp 1 127.0.0.1 5000 typ host" {
		t.Fatalf("parsed %+v", f)
	}
	if _, e := parseFrag("GET / HTTP/1.1"); e == nil || e.status != http.StatusBadRequest {
		t.Fatalf("garbage accepted: %v", e)
	}
}

func TestLinkHeaders(t *testing.T) {
	got := linkHeaders([]webrtc.ICEServer{
		{URLs: []string{"stun:stun.example:3478"}},
		{URLs: []string{"turn:t.example:3478?transport=udp"}, Username: `123:al"ice`, Credential: "c/d+e="},
	})
	want := []string{
		`<stun:stun.example:3478>; rel="ice-server"`,
		`<turn:t.example:3478?transport=udp>; rel="ice-server"; username="123:al\"ice"; credential="c/d+e="; credential-type="password"`,
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// An offer whose sections carry no msid (or only a=ssrc msid) still
// publishes: the server names the tracks.
func TestPrepareWHIPOfferNamesTracks(t *testing.T) {
	offer := sendingOffer(t)
	var kept []string
	for _, l := range strings.Split(offer, "\r\n") {
		if !strings.HasPrefix(l, "a=msid:") && !strings.Contains(l, " msid:") && l != "" {
			kept = append(kept, l)
		}
	}
	bare := strings.Join(kept, "\r\n") + "\r\n"
	out, anns, e := prepareWHIPOffer(bare)
	if e != nil {
		t.Fatal(e)
	}
	if len(anns) != 1 || anns[0].Source != "camera" || !strings.Contains(out, "a=msid:whip whip-video-") {
		t.Fatalf("announcements %+v, offer:\n%s", anns, out)
	}
}
