package sfu

import (
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"
)

// TestNodeIPAdvertised: with --node-ip the host candidates carry the public
// address (NAT 1:1) instead of the local one. Only gathering: nothing is sent.
func TestNodeIPAdvertised(t *testing.T) {
	e, err := NewEngine(EngineConfig{
		BindIP: "127.0.0.1", TCPPort: -1, NodeIPs: []string{"203.0.113.7"},
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	pc, err := e.NewPeerConnection(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	if _, err := pc.CreateDataChannel("data", nil); err != nil {
		t.Fatal(err)
	}
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	done := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(offer); err != nil {
		t.Fatal(err)
	}
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("gathering did not complete")
	}
	sdp := pc.LocalDescription().SDP
	if !strings.Contains(sdp, "203.0.113.7") {
		t.Fatalf("public IP not advertised:\n%s", sdp)
	}
	if strings.Contains(sdp, " 127.0.0.1 ") {
		t.Fatalf("local IP still advertised next to the public one:\n%s", sdp)
	}
}
