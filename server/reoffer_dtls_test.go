package server_test

import (
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/transport/v5"
	"github.com/pion/transport/v5/stdnet"
	"github.com/pion/webrtc/v4"
	"github.com/starling-rtc/starling/client"
	"github.com/starling-rtc/starling/protocol"
)

// A subscriber offer that adds media waits until the client's end of the
// connection is up, not only the server's. The server is the DTLS server
// here (the client answers "active"): its handshake ends when it sends
// its last flight, the client's when that flight arrives. aiortc 1.4,
// offered media in that gap, never decoded those tracks
// (TestAiortcClusterFirstRoom under load: the re-offer was answered before
// its data channel opened, 0 frames decoded). Here the viewer's network
// drops the server's last DTLS flight (records of epoch 1) until the
// viewer has heard of a published track and the server has resent that
// flight twice (the viewer's handshake retransmissions: a second or more
// apart), so an offer sent on the server's DTLS alone has long arrived;
// no offer with media may come before the viewer's DTLS is up, and once
// it is, the viewer gets the media.
func TestReofferWaitsForClientDTLS(t *testing.T) {
	// Long: it waits out the DTLS retransmission timer (two resends, a
	// second and more apart) whatever the load, 8-9 s in all; started
	// when a place happened to free, it began 50 s into the light phase
	// and ended that phase alone, 5 s after every other light test.
	parallelLong(t)
	srv := startServer(t, nil)
	gate := &dtlsGate{}
	viewer := join(t, srv, "dtls-gap", "viewer", func(o *client.Options) {
		o.LazyPublisher = true
		o.API = gatedAPI(t, gate.drop)
	})
	pub := join(t, srv, "dtls-gap", "pub")
	media := publishFake(t, pub)
	video := media.track("video").Track.ID
	if _, err := viewer.WaitEvent(ctxT(t, 30*time.Second), protocol.NotifyTrackPublished, nil); err != nil {
		t.Fatalf("viewer never heard of the published track: %v", err)
	}
	// The server's last flight was seen, then resent twice since.
	seen := max(gate.flights.Load(), 1) // the first one may be still to come
	waitFor(t, 60*time.Second, "the server's last DTLS flight, resent twice", func() bool { return gate.flights.Load() >= seen+2 })
	early := ""
	gate.open(func() {
		for _, e := range viewer.Events() {
			if e.Method == protocol.MethodOffer && strings.Contains(string(e.Params), "m=video") {
				early = string(e.Params)
			}
		}
	})
	if early != "" {
		t.Fatalf("a subscriber offer with media reached the viewer while its DTLS handshake was still going (%d of the server's last flights dropped): %.300s",
			gate.flights.Load(), early)
	}
	rec := record(viewer)
	waitFor(t, 30*time.Second, "the published video at the viewer once its DTLS is up", func() bool { return len(rec.payloads(video)) >= 30 })
}

// dtlsGate drops the datagrams with DTLS records of epoch 1 and later (the
// peer's Finished, then SCTP) that reach the connection until it opens.
type dtlsGate struct {
	mu      sync.Mutex
	opened  bool
	flights atomic.Int64 // dropped datagrams with a ChangeCipherSpec: the last flight, each time it is sent
}

// open lets everything through from now on; f runs first, with nothing
// let through yet.
func (g *dtlsGate) open(f func()) {
	g.mu.Lock()
	defer g.mu.Unlock()
	f()
	g.opened = true
}

// drop reports whether the datagram b is dropped.
func (g *dtlsGate) drop(b []byte) bool {
	if len(b) == 0 || b[0] < 20 || b[0] > 63 { // not DTLS (RFC 7983)
		return false
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.opened {
		return false
	}
	ccs, later := false, false
	for len(b) >= 13 { // record header: type, version, epoch, sequence number, length
		ccs = ccs || b[0] == 20
		later = later || int(b[3])<<8|int(b[4]) > 0
		b = b[min(len(b), 13+(int(b[11])<<8|int(b[12]))):]
	}
	if later && ccs {
		g.flights.Add(1)
	}
	return later
}

// gatedAPI is a loopback pion API whose UDP sockets drop the datagrams
// they read for which drop is true.
func gatedAPI(t *testing.T, drop func([]byte) bool) *webrtc.API {
	t.Helper()
	n, err := stdnet.NewNet()
	if err != nil {
		t.Fatal(err)
	}
	m := &webrtc.MediaEngine{}
	if err := m.RegisterDefaultCodecs(); err != nil {
		t.Fatal(err)
	}
	se := webrtc.SettingEngine{}
	se.SetNet(&gatedNet{Net: n, drop: drop})
	se.SetIncludeLoopbackCandidate(true)
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	se.SetIPFilter(func(ip net.IP) bool { return ip.IsLoopback() })
	se.SetICEMaxBindingRequests(client.ICECheckRetries)
	return webrtc.NewAPI(webrtc.WithMediaEngine(m), webrtc.WithSettingEngine(se))
}

type gatedNet struct {
	*stdnet.Net
	drop func([]byte) bool
}

func (n *gatedNet) ListenUDP(network string, laddr *net.UDPAddr) (transport.UDPConn, error) {
	c, err := n.Net.ListenUDP(network, laddr)
	if err != nil {
		return nil, err
	}
	return &gatedConn{UDPConn: c, drop: n.drop}, nil
}

// gatedConn is read by pion's ICE through ReadFrom (it does not offer the
// netip.AddrPort methods that ICE would prefer).
type gatedConn struct {
	transport.UDPConn
	drop func([]byte) bool
}

func (c *gatedConn) ReadFrom(b []byte) (int, net.Addr, error) {
	for {
		n, addr, err := c.UDPConn.ReadFrom(b)
		if err != nil || !c.drop(b[:n]) {
			return n, addr, err
		}
	}
}
