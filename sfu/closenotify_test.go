package sfu

import (
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/webrtc/v4"
)

// hookedSource is a Source whose Kind runs hook once armed: pion asks a
// track its kind inside AddTransceiverFromTrack, after its check that the
// connection is open and before it adds the transceiver, so the hook can
// close the connection exactly in that window.
type hookedSource struct {
	Source
	mu   sync.Mutex
	hook func()
}

func (h *hookedSource) arm(f func()) {
	h.mu.Lock()
	h.hook = f
	h.mu.Unlock()
}

func (h *hookedSource) Kind() webrtc.RTPCodecType {
	h.mu.Lock()
	f := h.hook
	h.hook = nil
	h.mu.Unlock()
	if f != nil {
		f()
	}
	return h.Source.Kind()
}

// connectedSubscriber is a subscriber connection with a pion client that
// answered its first offer (every candidate in the descriptions), once the
// connection is up at both ends (the client's DTLS handshake ends after
// the server's: closed before, it sends no close_notify).
func connectedSubscriber(t *testing.T) (*Subscriber, *webrtc.PeerConnection) {
	t.Helper()
	e, err := NewEngine(EngineConfig{BindIP: "127.0.0.1", TCPPort: -1, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	s, err := NewSubscriber(e, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	up := make(chan struct{})
	var once sync.Once
	s.OnConnected(func() { once.Do(func() { close(up) }) })
	client, err := webrtc.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = client.Close() })
	clientUp := make(chan struct{})
	var clientOnce sync.Once
	client.OnConnectionStateChange(func(st webrtc.PeerConnectionState) {
		if st == webrtc.PeerConnectionStateConnected {
			clientOnce.Do(func() { close(clientUp) })
		}
	})
	gathered := webrtc.GatheringCompletePromise(s.pc)
	if _, err := s.CreateOffer(); err != nil {
		t.Fatal(err)
	}
	<-gathered
	if err := client.SetRemoteDescription(*s.pc.LocalDescription()); err != nil {
		t.Fatal(err)
	}
	answer, err := client.CreateAnswer(nil)
	if err != nil {
		t.Fatal(err)
	}
	gathered = webrtc.GatheringCompletePromise(client)
	if err := client.SetLocalDescription(answer); err != nil {
		t.Fatal(err)
	}
	<-gathered
	if err := s.SetAnswer(client.LocalDescription().SDP); err != nil {
		t.Fatal(err)
	}
	for _, c := range []chan struct{}{up, clientUp} {
		select {
		case <-c:
		case <-time.After(20 * time.Second):
			t.Fatal("the subscriber connection did not come up")
		}
	}
	return s, client
}

// TestDownTrackAddedAsClientClosesIsStopped: a client that closes its
// connection sends a DTLS close_notify, and pion then closes the server's
// connection by itself, not through Subscriber.Close. A down track added
// as that happens (the subscriber loop adds a track published meanwhile)
// could land on the connection just after pion stopped its transceivers:
// its sender was never started nor stopped, and its RTCP reader waited on
// it for good, keeping the connection, the down track and its publisher's
// receiver in memory (issue 17: the soak's one leaked goroutine and ~11 MB
// after its churn). The add must fail and its sender be stopped.
func TestDownTrackAddedAsClientClosesIsStopped(t *testing.T) {
	s, client := connectedSubscriber(t)
	closedByClient := make(chan struct{})
	var once sync.Once
	s.OnFailed(func() { once.Do(func() { close(closedByClient) }) })

	src := &hookedSource{Source: NewReceiver("TR_late", vp8Codec, webrtc.RTPCodecTypeVideo,
		func([]rtcp.Packet) error { return nil }, slog.New(slog.NewTextHandler(io.Discard, nil)))}
	d := NewDownTrack(src, "PA_pub")
	t.Cleanup(d.Close)
	src.arm(func() {
		_ = client.Close()
		select {
		case <-closedByClient: // pion closed the server's connection on its own
		case <-time.After(20 * time.Second):
			t.Error("the server's connection was not closed after the client's close_notify")
		}
	})
	if err := s.AddDownTrack(d); err == nil {
		t.Error("a down track was added to a connection pion had closed")
	}
	if s.pc.SignalingState() != webrtc.SignalingStateClosed {
		t.Fatalf("signaling state %v: pion did not close the connection", s.pc.SignalingState())
	}
	// Every sender of the connection is stopped: a reader of its RTCP ends.
	for _, tr := range s.pc.GetTransceivers() {
		sender := tr.Sender()
		if sender == nil {
			continue
		}
		done := make(chan error, 1)
		go func() {
			_, _, err := sender.ReadRTCP()
			done <- err
		}()
		select {
		case err := <-done:
			if err == nil {
				t.Errorf("sender of %q read RTCP on a closed connection", tr.Mid())
			}
		case <-time.After(10 * time.Second):
			// The reader stays blocked: the test's own goroutine leaks, as
			// the down track's did.
			t.Fatalf("sender of transceiver %q (%v) was never stopped: its RTCP reader waits for good", tr.Mid(), tr.Direction())
		}
	}
}
