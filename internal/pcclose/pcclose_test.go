package pcclose

import (
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/rtcp"
	"github.com/pion/webrtc/v4"
)

// TestDeadlockFreesICE makes pion's close deadlock on purpose
// (Close says how) and checks what Close leaves once it gives up: the
// ICE transport stopped (its sockets and goroutines gone), only the three
// goroutines of the deadlock itself left.
//
// The deadlock: a connection negotiated without media (a data channel)
// has no acceptor for new SRTCP streams yet; SRTP starts with the first
// RTCP written, and the peer's RTCP for an SSRC this side does not know
// blocks the session's reader until the acceptor starts, which happens in
// a queued operation of the first negotiation with media. The queue is
// held here by a negotiationneeded handler (it runs on the queue's
// goroutine); on a loaded machine it is merely late. Close takes the DTLS
// transport's lock and waits for that reader; the queued operation waits
// for the lock.
//
// The deadlock's goroutines never end, so it happens in a child process
// (TestDeadlockChild), not beside the package's leak check.
func TestDeadlockFreesICE(t *testing.T) {
	cmd := exec.Command(os.Args[0], "-test.run", "^TestDeadlockChild$", "-test.v", "-test.count=1", "-test.timeout=90s")
	cmd.Env = append(os.Environ(), deadlockChild+"=1")
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "--- PASS: TestDeadlockChild") {
		t.Fatalf("child: %v\n%s", err, out)
	}
	t.Logf("child:\n%s", out)
}

// deadlockChild is set in the environment of the child process.
const deadlockChild = "STARLING_PCCLOSE_CHILD"

// TestDeadlockChild is TestDeadlockFreesICE's child.
func TestDeadlockChild(t *testing.T) {
	if os.Getenv(deadlockChild) == "" {
		t.Skip("run by TestDeadlockFreesICE in a process of its own")
	}
	wait = 500 * time.Millisecond
	api := loopbackAPI(t)
	a, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	b, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	if _, err := a.CreateDataChannel("data", nil); err != nil {
		t.Fatal(err)
	}
	negotiate(t, a, b)
	eventually(t, 20*time.Second, "the data-only connection up", func() bool {
		return a.ConnectionState() == webrtc.PeerConnectionStateConnected && b.ConnectionState() == webrtc.PeerConnectionStateConnected
	})

	// Hold a's operations queue.
	held, release := make(chan struct{}), make(chan struct{})
	a.OnNegotiationNeeded(func() { close(held); <-release })
	track, err := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2}, "audio", "s")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.AddTrack(track); err != nil {
		t.Fatal(err)
	}
	<-held
	released := false
	defer func() {
		if !released {
			close(release)
		}
	}()
	negotiate(t, a, b) // a's startRTP now queued behind the handler
	// SRTP starts on both sides; b's PLI names an SSRC a has no stream of.
	if err := a.WriteRTCP([]rtcp.Packet{&rtcp.PictureLossIndication{MediaSSRC: 1}}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "a's SRTCP reader blocked handing a new stream over", func() bool {
		if err := b.WriteRTCP([]rtcp.Packet{&rtcp.PictureLossIndication{SenderSSRC: 7, MediaSSRC: 4242}}); err != nil {
			t.Fatal(err)
		}
		return stacksHave("srtp/v3.(*SessionSRTCP).decrypt", "chan send")
	})

	ice := a.SCTP().Transport().ICETransport() // before Close holds the DTLS transport's lock
	closed := make(chan struct{})
	go func() {
		if err := Close(a, slog.New(slog.NewTextHandler(io.Discard, nil))); err != ErrStuck {
			t.Errorf("Close: %v, want ErrStuck", err)
		}
		close(closed)
	}()
	eventually(t, 10*time.Second, "Close waiting in DTLSTransport.Stop", func() bool {
		return stacksHave("(*DTLSTransport).Stop", "")
	})
	close(release)
	released = true
	select {
	case <-closed:
	case <-time.After(30 * time.Second):
		t.Fatal("Close did not return")
	}
	if !stacksHave("(*DTLSTransport).Stop", "") {
		t.Fatal("no deadlock: pion's close finished (the workaround may no longer be needed)")
	}
	eventually(t, 10*time.Second, "the stuck connection's ICE transport stopped", func() bool {
		return ice.State() == webrtc.ICETransportStateClosed
	})
	// With b closed too, no ICE goroutine is left but the handler of the
	// stuck connection's last ICE state change, which waits for the DTLS
	// transport's lock as the deadlock's own do: the agent, its sockets'
	// readers and its checks have ended.
	_ = b.Close()
	iceLeft := func() bool {
		for _, g := range goroutines() {
			if strings.Contains(g, "pion/ice/") && !strings.Contains(g, "(*DTLSTransport).State") {
				return true
			}
		}
		return false
	}
	if !pollFor(10*time.Second, func() bool { return !iceLeft() }) {
		t.Errorf("pion/ice goroutines left: %s", pionTops())
	}
	t.Logf("left of the stuck connection: %s", pionTops())
}

// goroutines is every goroutine's stack.
func goroutines() []string {
	buf := make([]byte, 1<<20)
	return strings.Split(string(buf[:runtime.Stack(buf, true)]), "\n\n")
}

// pionTops lists the top pion function of each goroutine in pion.
func pionTops() []string {
	var tops []string
	for _, g := range goroutines() {
		for _, line := range strings.Split(g, "\n") {
			if strings.HasPrefix(line, "github.com/pion/") {
				tops = append(tops, strings.SplitN(line, "(0x", 2)[0])
				break
			}
		}
	}
	return tops
}

// negotiate runs one offer/answer from a to b, without trickle.
func negotiate(t *testing.T, a, b *webrtc.PeerConnection) {
	t.Helper()
	offer, err := a.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	gathered := webrtc.GatheringCompletePromise(a)
	if err := a.SetLocalDescription(offer); err != nil {
		t.Fatal(err)
	}
	<-gathered
	if err := b.SetRemoteDescription(*a.LocalDescription()); err != nil {
		t.Fatal(err)
	}
	answer, err := b.CreateAnswer(nil)
	if err != nil {
		t.Fatal(err)
	}
	gathered = webrtc.GatheringCompletePromise(b)
	if err := b.SetLocalDescription(answer); err != nil {
		t.Fatal(err)
	}
	<-gathered
	if err := a.SetRemoteDescription(*b.LocalDescription()); err != nil {
		t.Fatal(err)
	}
}

// stacksHave reports whether a goroutine's stack has fn, in state (any if
// "").
func stacksHave(fn, state string) bool {
	for _, g := range goroutines() {
		if strings.Contains(g, fn) && (state == "" || strings.Contains(strings.SplitN(g, "\n", 2)[0], state)) {
			return true
		}
	}
	return false
}

// eventually polls cond every 20 ms until it holds, failing t after d.
func eventually(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	if !pollFor(d, cond) {
		t.Fatalf("after %v: %s", d, what)
	}
}

// pollFor polls cond every 20 ms until it holds (true) or d has passed.
func pollFor(d time.Duration, cond func() bool) bool {
	for deadline := time.Now().Add(d); !cond(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			return false
		}
	}
	return true
}

// loopbackAPI is a pion API with the default codecs and interceptors that
// gathers loopback candidates only.
func loopbackAPI(t *testing.T) *webrtc.API {
	t.Helper()
	m := &webrtc.MediaEngine{}
	if err := m.RegisterDefaultCodecs(); err != nil {
		t.Fatal(err)
	}
	ir := &interceptor.Registry{}
	if err := webrtc.RegisterDefaultInterceptors(m, ir); err != nil {
		t.Fatal(err)
	}
	se := webrtc.SettingEngine{}
	se.SetIPFilter(func(ip net.IP) bool { return ip.IsLoopback() })
	se.SetIncludeLoopbackCandidate(true)
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	return webrtc.NewAPI(webrtc.WithMediaEngine(m), webrtc.WithInterceptorRegistry(ir), webrtc.WithSettingEngine(se))
}
