package sfu

import (
	"io"
	"log/slog"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/webrtc/v4"
)

// dtlsApplicationData is the DTLS record type of what SCTP sends (RFC 6347).
const dtlsApplicationData = 23

// TestICERestartKeepsDataChannel holds one of SCTP's writes (a data
// channel's) between pion taking the selected candidate pair and writing
// to its connection, runs an ICE restart, which closes that connection, and
// lets the write go on: it meets the closed connection, as a write does on
// a starved machine when the restart runs in that gap. The server's
// connection must stay up and every message sent around the restart must
// arrive. Before restartmux.go, the write failed with io.ErrClosedPipe,
// SCTP closed the DTLS transport and pion closed the server's connection
// ("Closing PeerConnection from DTLS CloseNotify"; the soak's last way of
// losing data messages, docs/robustness.md).
func TestICERestartKeepsDataChannel(t *testing.T) {
	t.Run("udp", func(t *testing.T) { restartKeepsDataChannel(t, webrtc.NetworkTypeUDP4) })
	// Over ICE-TCP the restart closes the old session's connection in the
	// mux, before it unsets the selected pair.
	t.Run("tcp", func(t *testing.T) { restartKeepsDataChannel(t, webrtc.NetworkTypeTCP4) })
}

func restartKeepsDataChannel(t *testing.T, network webrtc.NetworkType) {
	cfg := EngineConfig{BindIP: "127.0.0.1", TCPPort: -1, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	if network == webrtc.NetworkTypeTCP4 {
		cfg.TCPPort = 0
	}
	e, err := NewEngine(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	counts := &e.udpMux.(*restartMux).restartCounts
	if network == webrtc.NetworkTypeTCP4 {
		counts = &e.tcpMux.(*restartTCPMux).restartCounts
	}
	var armed atomic.Bool
	held, release := make(chan struct{}), make(chan struct{})
	counts.writeHook = func(b []byte) {
		if len(b) > 0 && b[0] == dtlsApplicationData && armed.CompareAndSwap(true, false) {
			close(held)
			<-release
		}
	}

	server, err := e.NewPeerConnection(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer server.Close()
	closed := make(chan webrtc.PeerConnectionState, 1)
	// restart: 1 once the restart starts, 2 once the connection has left
	// "connected" for it (the restart takes it to "connecting").
	var restart atomic.Int32
	reconnected := make(chan struct{})
	server.OnConnectionStateChange(func(s webrtc.PeerConnectionState) {
		switch s {
		case webrtc.PeerConnectionStateClosed, webrtc.PeerConnectionStateFailed:
			select {
			case closed <- s:
			default:
			}
		case webrtc.PeerConnectionStateConnected:
			if restart.CompareAndSwap(2, 3) {
				close(reconnected)
			}
		default:
			restart.CompareAndSwap(1, 2)
		}
	})
	se := webrtc.SettingEngine{}
	se.SetIncludeLoopbackCandidate(true)
	se.SetNetworkTypes([]webrtc.NetworkType{network})
	se.SetIPFilter(func(ip net.IP) bool { return ip.IsLoopback() })
	client, err := webrtc.NewAPI(webrtc.WithSettingEngine(se)).NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()

	dc, err := server.CreateDataChannel("data", nil)
	if err != nil {
		t.Fatal(err)
	}
	open := make(chan struct{})
	dc.OnOpen(func() { close(open) })
	got := make(chan string, 16)
	client.OnDataChannel(func(d *webrtc.DataChannel) {
		d.OnMessage(func(m webrtc.DataChannelMessage) { got <- string(m.Data) })
	})
	negotiateGathered(t, server, client)
	waitOr(t, open, closed, "the data channel to open")

	send := func(s string) {
		t.Helper()
		if err := dc.SendText(s); err != nil {
			t.Fatalf("send %q: %v", s, err)
		}
	}
	send("before")
	if m := <-got; m != "before" {
		t.Fatalf("got %q, want \"before\"", m)
	}
	want := []string{}
	// The next DTLS record SCTP writes (this message, or a SACK or
	// heartbeat just before it) waits in the hook while the restart runs.
	armed.Store(true)
	send("during")
	want = append(want, "during")
	waitOr(t, held, closed, "SCTP's write to reach the mux")
	if server.ConnectionState() != webrtc.PeerConnectionStateConnected {
		t.Fatalf("server connection %s before the restart", server.ConnectionState())
	}
	restart.Store(1)
	negotiateGatheredWith(t, server, client, &webrtc.OfferOptions{ICERestart: true}) // closes the old session's connection first
	close(release)
	send("after")
	want = append(want, "after")

	seen := map[string]bool{}
	deadline := time.After(30 * time.Second)
	for len(seen) < len(want) {
		select {
		case m := <-got:
			seen[m] = true
		case s := <-closed:
			t.Fatalf("the server's connection went %s; got %v of %v", s, seen, want)
		case <-deadline:
			t.Fatalf("30 s after the restart: got %v of %v (server %s)", seen, want, server.ConnectionState())
		}
	}
	if n := counts.dropped.Load(); n == 0 {
		t.Fatal("no write met the closed connection: the test did not hold the restart's window")
	}
	// The connection comes back to "connected" once the new pair is
	// selected (over ICE-TCP it may be after the messages).
	waitOr(t, reconnected, closed, "the server's connection to be connected again after the restart")
}

// waitOr waits for ch, failing the test if the server's connection closes
// first or 20 s pass.
func waitOr(t *testing.T, ch <-chan struct{}, closed <-chan webrtc.PeerConnectionState, what string) {
	t.Helper()
	select {
	case <-ch:
	case s := <-closed:
		t.Fatalf("the server's connection went %s before %s", s, what)
	case <-time.After(20 * time.Second):
		t.Fatalf("20 s without %s", what)
	}
}

// BenchmarkRestartConnWrite: a write through pion's mux connection, bare
// and wrapped in restartConn, on pion's allocation-free path. Both must
// report 0 allocs/op.
func BenchmarkRestartConnWrite(b *testing.B) {
	udp, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		b.Fatal(err)
	}
	sink, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		b.Fatal(err)
	}
	defer sink.Close()
	mux := newRestartMux(webrtc.NewICEUDPMux(nil, udp))
	defer mux.Close()
	dst := sink.LocalAddr().(*net.UDPAddr).AddrPort()
	pkt := make([]byte, 1200)
	for _, tc := range []struct {
		name string
		get  func(ufrag string) (net.PacketConn, error)
	}{
		{"pion", func(u string) (net.PacketConn, error) { return mux.UDPMux.GetConn(u, udp.LocalAddr()) }},
		{"wrapped", func(u string) (net.PacketConn, error) { return mux.GetConn(u, udp.LocalAddr()) }},
	} {
		b.Run(tc.name, func(b *testing.B) {
			c, err := tc.get("bench" + tc.name)
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			w, ok := c.(ice.AddrPortReaderWriter)
			if !ok {
				b.Fatalf("%T lost pion's AddrPortReaderWriter", c)
			}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := w.WriteToAddrPort(pkt, dst); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
