package turnsrv

import (
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pion/turn/v5"
)

func start(t *testing.T) *Server {
	t.Helper()
	s, err := Start(Config{
		ListenIP: "127.0.0.1", RelayIP: net.ParseIP("127.0.0.1"), Secret: "turn-secret", TCP: true,
		CredentialTTL: time.Minute, Logger: slog.New(slog.DiscardHandler),
		AllowedPeer: func(ip net.IP) bool { return ip.IsLoopback() },
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// allocate logs in with user/pass and returns the relay connection.
func allocate(t *testing.T, s *Server, user, pass string) (*turn.Client, net.PacketConn, error) {
	t.Helper()
	conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	c, err := turn.NewClient(&turn.ClientConfig{
		TURNServerAddr: "127.0.0.1:" + strconv.Itoa(s.UDPPort()), Username: user, Password: pass,
		Realm: "starling", Conn: conn, RTO: 100 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	if err := c.Listen(); err != nil {
		t.Fatal(err)
	}
	relay, err := c.Allocate()
	if err == nil {
		t.Cleanup(func() { relay.Close() })
	}
	return c, relay, err
}

func TestCredentialsAndPermissions(t *testing.T) {
	s := start(t)
	ice, err := s.ICEServer("alice")
	if err != nil {
		t.Fatal(err)
	}
	wantUDP := "turn:127.0.0.1:" + strconv.Itoa(s.UDPPort()) + "?transport=udp"
	if len(ice.URLs) != 2 || ice.URLs[0] != wantUDP || !strings.HasSuffix(ice.URLs[1], "?transport=tcp") {
		t.Fatalf("URLs = %v", ice.URLs)
	}
	if !strings.HasSuffix(ice.Username, ":alice") {
		t.Fatalf("username %q: want <expiry>:alice", ice.Username)
	}
	exp, _ := strconv.ParseInt(strings.TrimSuffix(ice.Username, ":alice"), 10, 64)
	if d := time.Until(time.Unix(exp, 0)); d < 50*time.Second || d > 70*time.Second {
		t.Fatalf("credentials expire in %v, want ~1m", d)
	}

	// Wrong password: no allocation.
	if _, _, err := allocate(t, s, ice.Username, "wrong"); err == nil {
		t.Fatal("allocation with a wrong password succeeded")
	}
	// Expired credentials: no allocation.
	old, _, _ := turn.GenerateLongTermTURNRESTCredentials("turn-secret", "bob", -time.Minute)
	_, oldPass, _ := turn.GenerateLongTermTURNRESTCredentials("turn-secret", "bob", -time.Minute)
	if _, _, err := allocate(t, s, old, oldPass); err == nil {
		t.Fatal("allocation with expired credentials succeeded")
	}

	c, relay, err := allocate(t, s, ice.Username, ice.Credential.(string))
	if err != nil {
		t.Fatalf("allocation with handed-out credentials: %v", err)
	}
	if s.Allocations() != 1 {
		t.Fatalf("%d allocations", s.Allocations())
	}
	// The relay reaches this host's addresses only, never a foreign one.
	if err := c.CreatePermission(&net.UDPAddr{IP: net.ParseIP("192.0.2.10"), Port: 9}); err == nil {
		t.Fatal("permission to relay to a foreign address granted: open relay")
	}
	peer, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	if _, err := relay.WriteTo([]byte("hello"), peer.LocalAddr()); err != nil {
		t.Fatalf("relaying to a local peer: %v", err)
	}
	buf := make([]byte, 64)
	_ = peer.SetReadDeadline(time.Now().Add(3 * time.Second))
	n, from, err := peer.ReadFrom(buf)
	if err != nil || string(buf[:n]) != "hello" || from.String() != relay.LocalAddr().String() {
		t.Fatalf("local peer got %q from %v (%v), want hello from %v", buf[:n], from, err, relay.LocalAddr())
	}
}

func TestDefaultRelayIP(t *testing.T) {
	if ip := DefaultRelayIP("", "not-an-ip", "0.0.0.0", "203.0.113.5"); !ip.Equal(net.ParseIP("203.0.113.5")) {
		t.Fatalf("DefaultRelayIP picked %v", ip)
	}
}

// TestNoTCPRelay: a TCP allocation (RFC 6062) is refused. pion's server
// grants them, and the relay may talk to this host's own addresses: a
// participant with TURN credentials could then connect from the server to
// a TCP service on its loopback (the HTTP port, whose admin API trusts
// loopback clients on a server without keys), which this test did.
func TestNoTCPRelay(t *testing.T) {
	s := start(t)
	ice, err := s.ICEServer("mallory")
	if err != nil {
		t.Fatal(err)
	}
	service, err := net.Listen("tcp4", "127.0.0.1:0") // a loopback-only service
	if err != nil {
		t.Fatal(err)
	}
	defer service.Close()
	go func() {
		if c, err := service.Accept(); err == nil {
			_, _ = c.Write([]byte("loopback only"))
			_ = c.Close()
		}
	}()
	ctl, err := net.Dial("tcp4", "127.0.0.1:"+strconv.Itoa(s.TCPPort()))
	if err != nil {
		t.Fatal(err)
	}
	defer ctl.Close() // the client's Close leaves the connection it was given
	c, err := turn.NewClient(&turn.ClientConfig{
		STUNServerAddr: ctl.RemoteAddr().String(), TURNServerAddr: ctl.RemoteAddr().String(),
		Username: ice.Username, Password: ice.Credential.(string), Realm: "starling",
		Conn: turn.NewSTUNConn(ctl), RTO: 100 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Listen(); err != nil {
		t.Fatal(err)
	}
	alloc, err := c.AllocateTCP()
	if err != nil {
		return // refused: what is wanted
	}
	defer alloc.Close()
	conn, err := alloc.Dial("tcp4", service.Addr().String())
	if err != nil {
		t.Fatalf("a TCP relay was allocated (the connect then failed: %v)", err)
	}
	defer conn.Close()
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	b, _ := io.ReadAll(conn)
	t.Fatalf("a TCP relay reached a loopback service: read %q", b)
}

// TestRelayOnlyToAllowedPorts: with AllowedPort, the relay reaches the
// allowed port of a local address (the SFU's media port) and nothing else
// there: a datagram for another local port (a DNS stub resolver, statsd)
// is dropped, and so is one from it.
func TestRelayOnlyToAllowedPorts(t *testing.T) {
	media, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer media.Close()
	other, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	mediaPort := media.LocalAddr().(*net.UDPAddr).Port
	s, err := Start(Config{
		ListenIP: "127.0.0.1", RelayIP: net.ParseIP("127.0.0.1"), Secret: "turn-secret",
		CredentialTTL: time.Minute, Logger: slog.New(slog.DiscardHandler),
		AllowedPeer: func(ip net.IP) bool { return ip.IsLoopback() },
		AllowedPort: func(port int) bool { return port == mediaPort },
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	ice, err := s.ICEServer("mallory")
	if err != nil {
		t.Fatal(err)
	}
	_, relay, err := allocate(t, s, ice.Username, ice.Credential.(string))
	if err != nil {
		t.Fatal(err)
	}
	// The other port first: the relay writes in order and loopback
	// delivers within the write, so once the media port has its datagram,
	// the other port would have had its own already.
	for _, to := range []net.PacketConn{other, media} {
		if _, err := relay.WriteTo([]byte("hello"), to.LocalAddr()); err != nil {
			t.Fatal(err)
		}
	}
	buf := make([]byte, 64)
	_ = media.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, from, err := media.ReadFrom(buf)
	if err != nil || string(buf[:n]) != "hello" {
		t.Fatalf("the media port got %q (%v), want hello", buf[:n], err)
	}
	// The way back: a datagram from the other port is dropped, one from
	// the media port comes through.
	if _, err := other.WriteTo([]byte("from a local service"), from); err != nil {
		t.Fatal(err)
	}
	if _, err := media.WriteTo([]byte("from the SFU"), from); err != nil {
		t.Fatal(err)
	}
	_ = relay.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, _, err = relay.ReadFrom(buf)
	if err != nil || string(buf[:n]) != "from the SFU" {
		t.Fatalf("the relay client got %q (%v), want only what the media port sent", buf[:n], err)
	}
	// Already there if it was relayed (see above): the deadline only
	// bounds reading what is queued.
	_ = other.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	if n, _, err := other.ReadFrom(buf); err == nil {
		t.Fatalf("the other local port got %q through the relay", buf[:n])
	}
}
