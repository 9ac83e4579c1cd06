package sfu

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"github.com/pion/webrtc/v4"
)

// errorRecords keeps the error-level records logged through it.
type errorRecords struct {
	mu   sync.Mutex
	msgs []string
}

func (e *errorRecords) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelWarn }
func (e *errorRecords) Handle(_ context.Context, r slog.Record) error {
	if r.Level >= slog.LevelError {
		e.mu.Lock()
		e.msgs = append(e.msgs, r.Message)
		e.mu.Unlock()
	}
	return nil
}
func (e *errorRecords) WithAttrs([]slog.Attr) slog.Handler { return e }
func (e *errorRecords) WithGroup(string) slog.Handler      { return e }

func (e *errorRecords) list() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]string(nil), e.msgs...)
}

func sdpUfrag(t *testing.T, sdp string) string {
	t.Helper()
	_, rest, ok := strings.Cut(sdp, "a=ice-ufrag:")
	if !ok {
		t.Fatalf("no ice-ufrag in\n%s", sdp)
	}
	u, _, _ := strings.Cut(rest, "\r\n")
	return u
}

func hostCandidate(ufrag string) *webrtc.ICECandidateInit {
	return &webrtc.ICECandidateInit{Candidate: "candidate:1 1 UDP 2122252543 127.0.0.1 40000 typ host ufrag " + ufrag}
}

// TestCandidateOfAnotherICESessionWaits: a client's candidate whose ufrag is
// not the remote description's (its ICE restart's description is not
// applied, or never will be: the answer to a restart offer that arrived
// after the connection closed) waits for a description with that ufrag
// instead of reaching pion, which dropped it with an error-level log (the
// soak counted it as a server error after resumes). Once the restart's
// description is applied, the candidate is added; one of the previous
// session never is, and logs nothing either.
func TestCandidateOfAnotherICESessionWaits(t *testing.T) {
	logs := &errorRecords{}
	se := webrtc.SettingEngine{LoggerFactory: NewLoggerFactory(slog.New(logs))}
	api := webrtc.NewAPI(webrtc.WithSettingEngine(se))
	client, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	server, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	p := &peer{pc: server}
	defer p.Close()
	if _, err := client.CreateDataChannel("data", nil); err != nil {
		t.Fatal(err)
	}
	negotiateGathered(t, client, server)
	first := sdpUfrag(t, server.RemoteDescription().SDP)

	// The client restarts ICE; its new session's candidate comes before
	// (or without) the description that starts it.
	restart, err := client.CreateOffer(&webrtc.OfferOptions{ICERestart: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := client.SetLocalDescription(restart); err != nil {
		t.Fatal(err)
	}
	next := sdpUfrag(t, restart.SDP)
	if next == first {
		t.Fatalf("the restart kept ufrag %s", first)
	}
	if err := p.AddCandidate(hostCandidate(next)); err != nil {
		t.Fatalf("a candidate of the next session: %v", err)
	}
	if err := p.AddCandidate(hostCandidate(first)); err != nil {
		t.Fatalf("a candidate of the current session: %v", err)
	}
	if got := logs.list(); len(got) > 0 {
		t.Fatalf("a candidate of another ICE session was logged as an error: %q", got)
	}
	if len(p.pending) != 1 {
		t.Fatalf("%d candidates wait, want 1 (the next session's)", len(p.pending))
	}

	// The restart's description arrives: its candidate is added; the
	// previous session's candidate, sent late, waits for nothing.
	if err := server.SetRemoteDescription(*client.LocalDescription()); err != nil {
		t.Fatal(err)
	}
	p.flushCandidates()
	if len(p.pending) != 0 {
		t.Fatalf("%d candidates still wait after their description", len(p.pending))
	}
	if err := p.AddCandidate(hostCandidate(first)); err != nil {
		t.Fatal(err)
	}
	if got := logs.list(); len(got) > 0 {
		t.Fatalf("error logs: %q", got)
	}
	if len(p.pending) != 1 {
		t.Fatalf("%d candidates wait, want 1 (the late one of the old session)", len(p.pending))
	}
	// However many stale ones come, what waits stays bounded.
	for range 2 * maxPendingCandidates {
		if err := p.AddCandidate(hostCandidate("stale")); err != nil {
			t.Fatal(err)
		}
	}
	if len(p.pending) > maxPendingCandidates {
		t.Fatalf("%d candidates wait, bound %d", len(p.pending), maxPendingCandidates)
	}
}

// TestCandidateAsSDPLine: a client that trickles the SDP attribute line
// ("a=candidate:...", with its line ending) instead of
// RTCIceCandidate.candidate had it refused as "bad ICE candidate"; the same
// candidate is accepted in every form, before and after the description.
func TestCandidateAsSDPLine(t *testing.T) {
	api := webrtc.NewAPI()
	client, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	server, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	p := &peer{pc: server}
	defer p.Close()
	early := "a=candidate:2 1 UDP 2122252543 127.0.0.1 40002 typ host\r\n"
	if err := p.AddCandidate(&webrtc.ICECandidateInit{Candidate: early}); err != nil {
		t.Fatalf("before the description: %v", err)
	}
	if _, err := client.CreateDataChannel("data", nil); err != nil {
		t.Fatal(err)
	}
	negotiateGathered(t, client, server)
	ufrag := sdpUfrag(t, server.RemoteDescription().SDP)
	for _, line := range []string{
		"a=candidate:1 1 UDP 2122252543 127.0.0.1 40000 typ host ufrag " + ufrag + "\r\n",
		"candidate:1 1 UDP 2122252543 127.0.0.1 40001 typ host ufrag " + ufrag,
		"1 1 UDP 2122252543 127.0.0.1 40003 typ host ufrag " + ufrag,
	} {
		if err := p.AddCandidate(&webrtc.ICECandidateInit{Candidate: line}); err != nil {
			t.Errorf("%q: %v", line, err)
		}
	}
	if err := p.AddCandidate(&webrtc.ICECandidateInit{Candidate: "a=candidate:garbage"}); err == nil {
		t.Error("a garbage a=candidate: line was accepted")
	}
}
