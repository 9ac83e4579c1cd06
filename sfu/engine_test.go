package sfu

import (
	"io"
	"log/slog"
	"net"
	"strconv"
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

// TestEngineCloseEndsSilentTCPConnections: a client's TCP connection to the
// ICE-TCP port that has not sent its first STUN message yet (or never
// will) does not hold Engine.Close: pion's mux waited up to 30 s for that
// message, and a server's shutdown with it (tcpmux.go).
func TestEngineCloseEndsSilentTCPConnections(t *testing.T) {
	e, err := NewEngine(EngineConfig{BindIP: "127.0.0.1", Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(e.TCPPort())))
	if err != nil {
		e.Close()
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte{0, 20}); err != nil { // a STUN message's length, then nothing
		t.Fatal(err)
	}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		e.tcp.mu.Lock()
		n := len(e.tcp.conns)
		e.tcp.mu.Unlock()
		if n == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the connection was never accepted")
		}
	}
	closed := make(chan struct{})
	go func() { e.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(5 * time.Second): // pion's wait is 30 s, tcpFirstMessageWait 10 s
		t.Fatal("Engine.Close still waits for a silent TCP connection after 5 s")
	}
}
