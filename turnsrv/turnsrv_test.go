package turnsrv

import (
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
