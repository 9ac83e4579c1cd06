// Package turnsrv runs Starling's embedded TURN server (pion/turn), so
// clients behind firewalls that block UDP to the SFU still connect: they
// reach the TURN port (UDP, or TCP), and the relay talks to the SFU on this
// same machine.
//
// Credentials are time-limited, REST-API style (draft-uberti-behave-turn-
// rest): username "<expiry unix time>:<identity>", password
// base64(HMAC-SHA1(secret, username)). The server hands each joining client
// its own in join's iceServers; nobody needs to configure TURN users.
//
// The relay only talks to this node's own addresses, so it cannot be used
// as an open proxy to the rest of the network.
package turnsrv

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"time"

	"github.com/pion/turn/v5"
	"github.com/pion/webrtc/v4"

	"github.com/starling-rtc/starling/sfu"
)

// Config configures the TURN server.
type Config struct {
	ListenIP      string        // IP the UDP/TCP sockets listen on; "" = all interfaces
	Port          int           // UDP port, and TCP port when TCP is on; 0 = a free port
	TCP           bool          // also accept TURN over TCP (for networks that block UDP)
	RelayIP       net.IP        // address of relayed candidates; must be one of this host's
	Host          string        // host name or IP in the turn: URLs for clients; default RelayIP
	Realm         string        // default "starling"
	Secret        string        // shared secret of the credentials
	CredentialTTL time.Duration // lifetime of handed-out credentials; default 24h
	// AllowedPeer says which addresses the relay may talk to; nil = this
	// host's interface addresses.
	AllowedPeer func(ip net.IP) bool
	// AllowedPort says which UDP ports of those addresses the relay may
	// talk to (the SFU's media ports); nil = any. Datagrams to or from
	// another port are dropped: the relay is for reaching the SFU, not a
	// local service (a DNS stub resolver on 127.0.0.53:53, statsd, ...).
	AllowedPort func(port int) bool
	Logger      *slog.Logger
}

// Server is a running TURN server.
type Server struct {
	cfg     Config
	srv     *turn.Server
	udpPort int
	tcpPort int // 0 = no TCP
}

// Start opens the sockets and serves TURN.
func Start(cfg Config) (*Server, error) {
	if cfg.Secret == "" {
		return nil, errors.New("turn: a secret is required")
	}
	if cfg.RelayIP == nil {
		return nil, errors.New("turn: a relay IP is required")
	}
	if cfg.Realm == "" {
		cfg.Realm = "starling"
	}
	if cfg.CredentialTTL <= 0 {
		cfg.CredentialTTL = 24 * time.Hour
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Host == "" {
		cfg.Host = cfg.RelayIP.String()
	}
	if cfg.AllowedPeer == nil {
		cfg.AllowedPeer = LocalAddress
	}
	listenIP := cfg.ListenIP
	if listenIP == "" {
		listenIP = "0.0.0.0"
	}
	udp, err := net.ListenPacket("udp4", net.JoinHostPort(listenIP, strconv.Itoa(cfg.Port)))
	if err != nil {
		return nil, fmt.Errorf("TURN UDP port %d: %w", cfg.Port, err)
	}
	s := &Server{cfg: cfg, udpPort: udp.LocalAddr().(*net.UDPAddr).Port}
	gen := func() turn.RelayAddressGenerator {
		return udpOnly{&turn.RelayAddressGeneratorStatic{RelayAddress: cfg.RelayIP, Address: listenIP}, cfg.AllowedPort}
	}
	permit := func(_ net.Addr, peer net.IP) bool {
		ok := cfg.AllowedPeer(peer)
		if !ok {
			cfg.Logger.Debug("turn: refused relaying to a foreign address", "peer", peer)
		}
		return ok
	}
	sc := turn.ServerConfig{
		Realm:         cfg.Realm,
		AuthHandler:   turn.LongTermTURNRESTAuthHandler(cfg.Secret, sfu.NewLoggerFactory(cfg.Logger).NewLogger("turn")),
		LoggerFactory: sfu.NewLoggerFactory(cfg.Logger),
		PacketConnConfigs: []turn.PacketConnConfig{{
			PacketConn: udp, RelayAddressGenerator: gen(), PermissionHandler: permit,
		}},
	}
	if cfg.TCP {
		ln, err := net.Listen("tcp4", net.JoinHostPort(listenIP, strconv.Itoa(s.udpPort)))
		if err != nil && cfg.Port == 0 { // the free UDP port is taken on TCP: any port
			ln, err = net.Listen("tcp4", net.JoinHostPort(listenIP, "0"))
		}
		if err != nil {
			_ = udp.Close()
			return nil, fmt.Errorf("TURN TCP port %d: %w", s.udpPort, err)
		}
		s.tcpPort = ln.Addr().(*net.TCPAddr).Port
		sc.ListenerConfigs = []turn.ListenerConfig{{Listener: ln, RelayAddressGenerator: gen(), PermissionHandler: permit}}
	}
	if s.srv, err = turn.NewServer(sc); err != nil {
		_ = udp.Close()
		for _, l := range sc.ListenerConfigs {
			_ = l.Listener.Close()
		}
		return nil, fmt.Errorf("TURN server: %w", err)
	}
	return s, nil
}

// UDPPort and TCPPort are the listening ports (TCPPort 0 = no TCP).
func (s *Server) UDPPort() int { return s.udpPort }
func (s *Server) TCPPort() int { return s.tcpPort }

// Allocations is the number of live relay allocations.
func (s *Server) Allocations() int { return s.srv.AllocationCount() }

// ICEServer returns a TURN server entry with fresh credentials for identity.
func (s *Server) ICEServer(identity string) (webrtc.ICEServer, error) {
	user, pass, err := turn.GenerateLongTermTURNRESTCredentials(s.cfg.Secret, identity, s.cfg.CredentialTTL)
	if err != nil {
		return webrtc.ICEServer{}, err
	}
	host := s.cfg.Host
	if ip := net.ParseIP(host); ip != nil && ip.To4() == nil {
		host = "[" + host + "]"
	}
	urls := []string{fmt.Sprintf("turn:%s:%d?transport=udp", host, s.udpPort)}
	if s.tcpPort != 0 {
		urls = append(urls, fmt.Sprintf("turn:%s:%d?transport=tcp", host, s.tcpPort))
	}
	return webrtc.ICEServer{URLs: urls, Username: user, Credential: pass, CredentialType: webrtc.ICECredentialTypePassword}, nil
}

// Close stops the server and its sockets.
func (s *Server) Close() error { return s.srv.Close() }

// udpOnly allocates UDP relays only. WebRTC clients ask for UDP relays
// (whether they reach the server over UDP, TCP or TLS); a TCP allocation
// (RFC 6062, which pion's server grants) let a participant open TCP
// connections from this host to its own addresses, loopback included:
// the HTTP port (whose admin API trusts loopback clients on a server
// without keys, and /debug/pprof), the cluster bus, any local service.
type udpOnly struct {
	turn.RelayAddressGenerator
	port func(int) bool // Config.AllowedPort
}

func (g udpOnly) AllocatePacketConn(c turn.AllocateListenerConfig) (net.PacketConn, net.Addr, error) {
	conn, addr, err := g.RelayAddressGenerator.AllocatePacketConn(c)
	if err != nil || g.port == nil {
		return conn, addr, err
	}
	return portFilter{conn, g.port}, addr, nil
}

// portFilter drops a relay's datagrams to and from ports not allowed.
type portFilter struct {
	net.PacketConn
	allowed func(int) bool
}

func (c portFilter) ok(a net.Addr) bool {
	u, isUDP := a.(*net.UDPAddr)
	return isUDP && c.allowed(u.Port)
}

func (c portFilter) WriteTo(p []byte, to net.Addr) (int, error) {
	if !c.ok(to) {
		return len(p), nil // dropped, as a firewall would
	}
	return c.PacketConn.WriteTo(p, to)
}

func (c portFilter) ReadFrom(p []byte) (int, net.Addr, error) {
	for {
		n, from, err := c.PacketConn.ReadFrom(p)
		if err != nil || c.ok(from) {
			return n, from, err
		}
	}
}

var errNoTCPRelay = errors.New("turn: TCP relays (RFC 6062) are not offered: allocate a UDP relay")

func (udpOnly) AllocateListener(turn.AllocateListenerConfig) (net.Listener, net.Addr, error) {
	return nil, nil, errNoTCPRelay
}

func (udpOnly) AllocateConn(turn.AllocateConnConfig) (net.Conn, error) {
	return nil, errNoTCPRelay
}

// LocalAddress reports whether ip belongs to one of this host's interfaces.
func LocalAddress(ip net.IP) bool {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return false
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.Equal(ip) {
			return true
		}
	}
	return false
}

// DefaultRelayIP picks the address relayed candidates should carry: the
// first of preferred that parses, else the IP of the interface that routes
// to the internet, else nil.
func DefaultRelayIP(preferred ...string) net.IP {
	for _, p := range preferred {
		if ip := net.ParseIP(p); ip != nil && !ip.IsUnspecified() {
			return ip
		}
	}
	c, err := net.Dial("udp4", "192.0.2.1:9") // no packet is sent: this only picks a route
	if err != nil {
		return nil
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).IP
}
