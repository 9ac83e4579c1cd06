package client

import (
	"net"
	"regexp"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"
)

// TestICESurvivesUnansweredFirstChecks: the client's first connectivity
// checks go unanswered for 2.5 s (on a busy machine the server's ICE agent
// starts late, and checks that arrive before it has the client's
// credentials are discarded), then the path works. The client must still
// connect. With pion's default of 7 retries 200 ms apart, the client gave
// the only candidate pair up after 1.6 s and never checked it again: the
// server's own checks reached it, but only the controlling side nominates,
// and the connection stayed "checking" until ICE failed 30 s later
// (server/speakerorder_test.go, a publisher that never started).
func TestICESurvivesUnansweredFirstChecks(t *testing.T) {
	api, err := LoopbackAPI()
	if err != nil {
		t.Fatal(err)
	}
	offerer, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	defer offerer.Close()
	// The answerer stands for the server: plain pion on loopback.
	se := webrtc.SettingEngine{}
	se.SetIncludeLoopbackCandidate(true)
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	se.SetIPFilter(func(ip net.IP) bool { return ip.IsLoopback() })
	answerer, err := webrtc.NewAPI(webrtc.WithSettingEngine(se)).NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	defer answerer.Close()
	if _, err := offerer.CreateDataChannel("data", nil); err != nil {
		t.Fatal(err)
	}
	connected := make(chan struct{})
	var once sync.Once
	offerer.OnICEConnectionStateChange(func(s webrtc.ICEConnectionState) {
		if s == webrtc.ICEConnectionStateConnected {
			once.Do(func() { close(connected) })
		}
	})

	offer, err := offerer.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	gathered := webrtc.GatheringCompletePromise(offerer)
	if err := offerer.SetLocalDescription(offer); err != nil {
		t.Fatal(err)
	}
	<-gathered
	// Each side reaches the other through the proxy: a candidate's port
	// becomes that of the proxy's socket facing the side that reads it.
	px := newCheckProxy(t)
	defer px.close()
	offerSDP, aPort := rewritePort(t, offerer.LocalDescription().SDP, px.toB.LocalAddr().(*net.UDPAddr).Port)
	px.a.Store(&net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: aPort})
	if err := answerer.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: offerSDP}); err != nil {
		t.Fatal(err)
	}
	answer, err := answerer.CreateAnswer(nil)
	if err != nil {
		t.Fatal(err)
	}
	gathered = webrtc.GatheringCompletePromise(answerer)
	if err := answerer.SetLocalDescription(answer); err != nil {
		t.Fatal(err)
	}
	<-gathered
	answerSDP, bPort := rewritePort(t, answerer.LocalDescription().SDP, px.toA.LocalAddr().(*net.UDPAddr).Port)
	px.b.Store(&net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: bPort})
	// The client's checks are lost for the first 2.5 s.
	px.dropAToBUntil.Store(time.Now().Add(2500 * time.Millisecond).UnixNano())
	if err := offerer.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: answerSDP}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-connected:
		t.Logf("connected after dropping %d of the client's packets, then passing %d", px.dropped.Load(), px.passed.Load())
	case <-time.After(20 * time.Second):
		t.Fatalf("ICE still %s 20 s after the answer (dropped %d of the client's packets, then passed %d)",
			offerer.ICEConnectionState(), px.dropped.Load(), px.passed.Load())
	}
}

var (
	candidatePort = regexp.MustCompile(`(a=candidate:\S+ 1 udp \d+ 127\.0\.0\.1 )(\d+)`)
	rtcpCandidate = regexp.MustCompile(`a=candidate:\S+ 2 [^\r\n]*\r?\n`)
)

// rewritePort replaces the port of the description's one loopback UDP
// candidate with port and returns the one it had. pion's component-2
// (RTCP) candidates, which it pairs too, are dropped.
func rewritePort(t *testing.T, sdp string, port int) (string, int) {
	t.Helper()
	sdp = rtcpCandidate.ReplaceAllString(sdp, "")
	m := candidatePort.FindAllStringSubmatch(sdp, -1)
	if len(m) != 1 {
		t.Fatalf("want one loopback UDP candidate, got %d in\n%s", len(m), sdp)
	}
	old, _ := strconv.Atoi(m[0][2])
	return candidatePort.ReplaceAllString(sdp, "${1}"+strconv.Itoa(port)), old
}

// checkProxy relays UDP between a (reached from toA) and b (reached from
// toB), dropping what a sends until dropAToBUntil.
type checkProxy struct {
	toA, toB        *net.UDPConn
	a, b            atomic.Pointer[net.UDPAddr]
	dropAToBUntil   atomic.Int64
	dropped, passed atomic.Int64
	wg              sync.WaitGroup
}

func newCheckProxy(t *testing.T) *checkProxy {
	t.Helper()
	listen := func() *net.UDPConn {
		c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	p := &checkProxy{toA: listen(), toB: listen()}
	p.dropAToBUntil.Store(time.Now().Add(time.Hour).UnixNano())
	p.wg.Add(2)
	go p.relay(p.toA, p.toB, &p.b, true)
	go p.relay(p.toB, p.toA, &p.a, false)
	return p
}

func (p *checkProxy) relay(from, to *net.UDPConn, dst *atomic.Pointer[net.UDPAddr], fromA bool) {
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
		if fromA {
			if time.Now().UnixNano() < p.dropAToBUntil.Load() {
				p.dropped.Add(1)
				continue
			}
			p.passed.Add(1)
		}
		_, _ = to.WriteToUDP(buf[:n], addr)
	}
}

func (p *checkProxy) close() {
	p.toA.Close()
	p.toB.Close()
	p.wg.Wait()
}
