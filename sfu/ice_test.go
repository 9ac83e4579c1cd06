package sfu

import (
	"io"
	"log/slog"
	"net"
	"regexp"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"
)

// TestICESurvivesUnansweredFirstChecks: the server offers (as for every
// subscriber connection, where it is the controlling ICE agent, the only
// side that nominates a pair), and its first connectivity checks go
// unanswered for 2.5 s: on a busy machine the client's ICE agent starts
// late and discards them. The connection must still come up. With pion's
// default of 7 retries 200 ms apart the server gave its only pair up after
// 1.6 s, the client's own checks changed nothing, and the connection stayed
// "checking" until ICE failed.
func TestICESurvivesUnansweredFirstChecks(t *testing.T) {
	e, err := NewEngine(EngineConfig{BindIP: "127.0.0.1", TCPPort: -1, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	server, err := e.NewPeerConnection(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer server.Close()
	se := webrtc.SettingEngine{}
	se.SetIncludeLoopbackCandidate(true)
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	se.SetIPFilter(func(ip net.IP) bool { return ip.IsLoopback() })
	client, err := webrtc.NewAPI(webrtc.WithSettingEngine(se)).NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	if _, err := server.CreateDataChannel("data", nil); err != nil {
		t.Fatal(err)
	}
	connected := make(chan struct{})
	var once sync.Once
	server.OnICEConnectionStateChange(func(s webrtc.ICEConnectionState) {
		if s == webrtc.ICEConnectionStateConnected {
			once.Do(func() { close(connected) })
		}
	})

	offer, err := server.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	gathered := webrtc.GatheringCompletePromise(server)
	if err := server.SetLocalDescription(offer); err != nil {
		t.Fatal(err)
	}
	<-gathered
	px := newCheckRelay(t)
	defer px.close()
	// Each side reaches the other through the relay: a candidate's port
	// becomes that of the relay's socket facing the side that reads it.
	offerSDP, sPort := relayPort(t, server.LocalDescription().SDP, px.toC.LocalAddr().(*net.UDPAddr).Port)
	px.s.Store(&net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: sPort})
	if err := client.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: offerSDP}); err != nil {
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
	answerSDP, cPort := relayPort(t, client.LocalDescription().SDP, px.toS.LocalAddr().(*net.UDPAddr).Port)
	px.c.Store(&net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: cPort})
	// The server's checks are lost for the first 2.5 s.
	px.dropUntil.Store(time.Now().Add(2500 * time.Millisecond).UnixNano())
	if err := server.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: answerSDP}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-connected:
		t.Logf("connected after dropping %d of the server's packets, then passing %d", px.dropped.Load(), px.passed.Load())
	case <-time.After(20 * time.Second):
		t.Fatalf("ICE still %s 20 s after the answer (dropped %d of the server's packets, then passed %d)",
			server.ICEConnectionState(), px.dropped.Load(), px.passed.Load())
	}
}

var (
	relayCandidate = regexp.MustCompile(`(a=candidate:\S+ 1 udp \d+ 127\.0\.0\.1 )(\d+)`)
	rtcpComponent  = regexp.MustCompile(`a=candidate:\S+ 2 [^\r\n]*\r?\n`)
)

// relayPort replaces the port of the description's one loopback UDP
// candidate with port and returns the one it had; component-2 (RTCP)
// candidates, which pion pairs too, are dropped.
func relayPort(t *testing.T, sdp string, port int) (string, int) {
	t.Helper()
	sdp = rtcpComponent.ReplaceAllString(sdp, "")
	m := relayCandidate.FindAllStringSubmatch(sdp, -1)
	if len(m) != 1 {
		t.Fatalf("want one loopback UDP candidate, got %d in\n%s", len(m), sdp)
	}
	old, _ := strconv.Atoi(m[0][2])
	return relayCandidate.ReplaceAllString(sdp, "${1}"+strconv.Itoa(port)), old
}

// checkRelay relays UDP between the server s (reached from toS) and the
// client c (reached from toC), dropping what the server sends until
// dropUntil.
type checkRelay struct {
	toS, toC        *net.UDPConn
	s, c            atomic.Pointer[net.UDPAddr]
	dropUntil       atomic.Int64
	dropped, passed atomic.Int64
	wg              sync.WaitGroup
}

func newCheckRelay(t *testing.T) *checkRelay {
	t.Helper()
	listen := func() *net.UDPConn {
		c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	p := &checkRelay{toS: listen(), toC: listen()}
	p.dropUntil.Store(time.Now().Add(time.Hour).UnixNano())
	p.wg.Add(2)
	go p.relay(p.toS, p.toC, &p.c, true)
	go p.relay(p.toC, p.toS, &p.s, false)
	return p
}

func (p *checkRelay) relay(from, to *net.UDPConn, dst *atomic.Pointer[net.UDPAddr], fromServer bool) {
	defer p.wg.Done()
	buf := make([]byte, 1500)
	for {
		n, _, err := from.ReadFromUDP(buf)
		if err != nil {
			return
		}
		addr := dst.Load()
		if addr == nil {
			continue
		}
		if fromServer {
			if time.Now().UnixNano() < p.dropUntil.Load() {
				p.dropped.Add(1)
				continue
			}
			p.passed.Add(1)
		}
		_, _ = to.WriteToUDP(buf[:n], addr)
	}
}

func (p *checkRelay) close() {
	p.toS.Close()
	p.toC.Close()
	p.wg.Wait()
}
