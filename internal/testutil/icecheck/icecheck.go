// Package icecheck tests that a WebRTC peer which offers (the controlling
// ICE agent, the only side that nominates a pair) connects although its
// first connectivity checks go unanswered: on a busy machine the other
// side's ICE agent starts late and discards them. The client and sfu
// packages' own tests use it for their peers; it imports pion only, so
// that their internal tests may.
package icecheck

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

// UnansweredFirstChecks connects offerer to a plain pion answerer on
// loopback through a UDP relay that drops what offerer sends for the
// first 2.5 s, and fails the test unless ICE connects within 20 s of the
// answer. who names offerer in the log ("client", "server").
func UnansweredFirstChecks(t *testing.T, offerer *webrtc.PeerConnection, who string) {
	t.Helper()
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
	px := newCheckRelay(t)
	defer px.close()
	// Each side reaches the other through the relay: a candidate's port
	// becomes that of the relay's socket facing the side that reads it.
	offerSDP, oPort := relayPort(t, offerer.LocalDescription().SDP, px.toA.LocalAddr().(*net.UDPAddr).Port)
	px.o.Store(&net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: oPort})
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
	answerSDP, aPort := relayPort(t, answerer.LocalDescription().SDP, px.toO.LocalAddr().(*net.UDPAddr).Port)
	px.a.Store(&net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: aPort})
	// The offerer's checks are lost for the first 2.5 s.
	px.dropUntil.Store(time.Now().Add(2500 * time.Millisecond).UnixNano())
	if err := offerer.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: answerSDP}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-connected:
		t.Logf("connected after dropping %d of the %s's packets, then passing %d", px.dropped.Load(), who, px.passed.Load())
	case <-time.After(20 * time.Second):
		t.Fatalf("ICE still %s 20 s after the answer (dropped %d of the %s's packets, then passed %d)",
			offerer.ICEConnectionState(), px.dropped.Load(), who, px.passed.Load())
	}
}

var (
	loopbackCandidate = regexp.MustCompile(`(a=candidate:\S+ 1 udp \d+ 127\.0\.0\.1 )(\d+)`)
	rtcpComponent     = regexp.MustCompile(`a=candidate:\S+ 2 [^\r\n]*\r?\n`)
)

// relayPort replaces the port of the description's one loopback UDP
// candidate with port and returns the one it had; component-2 (RTCP)
// candidates, which pion pairs too, are dropped.
func relayPort(t *testing.T, sdp string, port int) (string, int) {
	t.Helper()
	sdp = rtcpComponent.ReplaceAllString(sdp, "")
	m := loopbackCandidate.FindAllStringSubmatch(sdp, -1)
	if len(m) != 1 {
		t.Fatalf("want one loopback UDP candidate, got %d in\n%s", len(m), sdp)
	}
	old, _ := strconv.Atoi(m[0][2])
	return loopbackCandidate.ReplaceAllString(sdp, "${1}"+strconv.Itoa(port)), old
}

// checkRelay relays UDP between the offerer o (reached from toO) and the
// answerer a (reached from toA), dropping what the offerer sends until
// dropUntil.
type checkRelay struct {
	toO, toA        *net.UDPConn
	o, a            atomic.Pointer[net.UDPAddr]
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
	p := &checkRelay{toO: listen(), toA: listen()}
	p.dropUntil.Store(time.Now().Add(time.Hour).UnixNano())
	p.wg.Add(2)
	go p.relay(p.toO, p.toA, &p.a, true)
	go p.relay(p.toA, p.toO, &p.o, false)
	return p
}

func (p *checkRelay) relay(from, to *net.UDPConn, dst *atomic.Pointer[net.UDPAddr], fromOfferer bool) {
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
		if fromOfferer {
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
	p.toO.Close()
	p.toA.Close()
	p.wg.Wait()
}
