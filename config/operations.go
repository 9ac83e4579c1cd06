package config

import (
	"flag"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"net/url"
	"strings"
	"time"

	"github.com/starling-rtc/starling/auth"
)

// EnvKeys names the environment variable with API keys, "key1:secret1,key2:secret2".
// Keys from it are added to (and override) the config file's keys: map.
const EnvKeys = auth.EnvKeys

// Limits bound what one client, IP or room may use. A zero value disables
// that limit (except the frame and data sizes, where 0 means the default).
type Limits struct {
	// MaxRooms is the most rooms open at once on this node.
	MaxRooms int `yaml:"max_rooms"`
	// MaxParticipants is the most participants in one room.
	MaxParticipants int `yaml:"max_participants"`
	// MaxTracks is the most tracks one participant publishes at once.
	MaxTracks int `yaml:"max_tracks"`
	// MaxSubscriptions is the most tracks one participant receives at once.
	MaxSubscriptions int `yaml:"max_subscriptions"`
	// SignalingRate is the sustained signaling messages per second allowed
	// per connection; SignalingBurst the short burst above it.
	SignalingRate  float64 `yaml:"signaling_rate"`
	SignalingBurst int     `yaml:"signaling_burst"`
	// JoinRate is the sustained joins per second allowed per client IP;
	// JoinBurst the short burst above it. Loopback clients are exempt.
	JoinRate  float64 `yaml:"join_rate"`
	JoinBurst int     `yaml:"join_burst"`
	// MaxDataMessage is the largest data-channel message relayed, in bytes.
	MaxDataMessage int `yaml:"max_data_message"`
	// MaxFrame is the largest WebSocket frame accepted, in bytes; larger
	// ones close the socket with 1009.
	MaxFrame int64 `yaml:"max_frame"`
	// IdleTimeout drops a signaling connection silent this long (no frame,
	// no pong).
	IdleTimeout Duration `yaml:"idle_timeout"`
	// PingInterval is how often the server pings a signaling connection
	// (a WebSocket ping the client's library answers with a pong): what
	// keeps a quiet connection from reaching IdleTimeout. Below it.
	PingInterval Duration `yaml:"ping_interval"`
}

// Webhook configures event delivery to HTTP endpoints.
type Webhook struct {
	// URLs receive a signed JSON POST per event; empty disables webhooks.
	URLs []string `yaml:"urls"`
	// APIKey names the key (of keys:) whose secret signs the requests;
	// empty means the only key, or the first in sorted order.
	APIKey string `yaml:"api_key"`
	// Timeout bounds one delivery attempt.
	Timeout Duration `yaml:"timeout"`
	// QueueSize bounds the events waiting for delivery; when full, new
	// events are dropped (and counted) rather than blocking anything.
	QueueSize int `yaml:"queue_size"`
	// MaxAttempts is how often one event is tried before it is dropped.
	MaxAttempts int `yaml:"max_attempts"`
}

// TURN configures the embedded TURN server.
type TURN struct {
	// Enabled starts a TURN server and hands every joining client
	// time-limited credentials for it in join's iceServers.
	Enabled bool `yaml:"enabled"`
	// Port is the UDP port, and the TCP port when TCP is on; 0 picks a free one.
	Port int `yaml:"port"`
	// TCP also accepts TURN over TCP, for networks that block UDP.
	TCP bool `yaml:"tcp"`
	// RelayIP is the address relayed candidates carry; empty = the first
	// rtc.node_ip, else rtc.bind_ip, else the host's outgoing interface.
	RelayIP string `yaml:"relay_ip"`
	// Host is the host name or IP put in the turn: URLs; empty = RelayIP.
	Host string `yaml:"host"`
	// CredentialTTL is how long handed-out credentials stay valid.
	CredentialTTL Duration `yaml:"credential_ttl"`
	// APIKey names the key whose secret derives the credentials; empty = the
	// only (or first) key; without keys a random secret per process is used.
	APIKey string `yaml:"api_key"`
}

// defaultOperations sets the defaults of the keys in this file.
func (c *Config) defaultOperations() {
	c.Limits = Limits{
		MaxRooms:         1000,
		MaxParticipants:  500,
		MaxTracks:        8,
		MaxSubscriptions: 500,
		SignalingRate:    50,
		SignalingBurst:   200,
		JoinRate:         10,
		JoinBurst:        50,
		MaxDataMessage:   16 << 10,
		MaxFrame:         1 << 20,
		IdleTimeout:      Duration(30 * time.Second),
		PingInterval:     Duration(10 * time.Second),
	}
	c.Webhook = Webhook{Timeout: Duration(5 * time.Second), QueueSize: 1024, MaxAttempts: 5}
	c.TURN = TURN{Port: 3478, TCP: true, CredentialTTL: Duration(24 * time.Hour)}
}

// operationFlags defines the flags of the keys in this file and returns the
// function that copies a given flag into cfg.
func operationFlags(fs *flag.FlagSet, def Config) func(cfg *Config, name string) {
	insecure := fs.Bool("insecure-open", def.InsecureOpen, "allow running without API keys on a non-loopback address (anyone can join any room)")
	tlsCert := fs.String("tls-cert", def.HTTP.TLSCert, "TLS certificate `file` (PEM, with chain) for HTTPS/WSS; needs --tls-key")
	tlsKey := fs.String("tls-key", def.HTTP.TLSKey, "TLS private key `file` (PEM) for HTTPS/WSS; needs --tls-cert")
	var origins listFlag
	fs.Var(&origins, "allowed-origin", "browser `origin` allowed to open the signaling WebSocket, e.g. https://app.example.com;\n"+
		"repeatable or comma-separated; * allows any; none = same origin only (clients sending no Origin are always allowed)")
	var hooks listFlag
	fs.Var(&hooks, "webhook-url", "`URL` receiving signed event POSTs; repeatable or comma-separated")
	pprofOn := fs.Bool("pprof", def.HTTP.Pprof, "serve Go's profiler at /debug/pprof/ (CPU, heap, goroutines) to loopback clients only")
	turnOn := fs.Bool("turn", def.TURN.Enabled, "run the embedded TURN server and hand clients credentials for it")
	turnPort := fs.Int("turn-port", def.TURN.Port, "embedded TURN server's UDP (and TCP) `port`; 0 picks a free port")
	turnRelay := fs.String("turn-relay-ip", def.TURN.RelayIP, "`IP` of relayed candidates; empty = first --node-ip, --media-bind-ip, or the outgoing interface")
	turnHost := fs.String("turn-host", def.TURN.Host, "`host` name or IP in the turn: URLs handed to clients; empty = the relay IP")
	return func(cfg *Config, name string) {
		switch name {
		case "insecure-open":
			cfg.InsecureOpen = *insecure
		case "tls-cert":
			cfg.HTTP.TLSCert = *tlsCert
		case "tls-key":
			cfg.HTTP.TLSKey = *tlsKey
		case "allowed-origin":
			cfg.HTTP.AllowedOrigins = []string(origins)
		case "webhook-url":
			cfg.Webhook.URLs = []string(hooks)
		case "pprof":
			cfg.HTTP.Pprof = *pprofOn
		case "turn":
			cfg.TURN.Enabled = *turnOn
		case "turn-port":
			cfg.TURN.Port = *turnPort
		case "turn-relay-ip":
			cfg.TURN.RelayIP = *turnRelay
		case "turn-host":
			cfg.TURN.Host = *turnHost
		}
	}
}

// applyEnvKeys adds the keys of $STARLING_KEYS to cfg.Keys.
func (c *Config) applyEnvKeys(getenv func(string) string) error {
	v := getenv(EnvKeys)
	if strings.TrimSpace(v) == "" {
		return nil
	}
	keys, err := auth.ParseKeys(v)
	if err != nil {
		return fmt.Errorf("$%s: %w", EnvKeys, err)
	}
	merged := make(map[string]string, len(c.Keys)+len(keys))
	maps.Copy(merged, c.Keys)
	maps.Copy(merged, keys)
	c.Keys = merged
	return nil
}

// validateOperations checks the keys of this file; bad is Validate's reporter.
func (c Config) validateOperations(bad func(format string, args ...any)) {
	for _, e := range auth.Keys(c.Keys).Check() {
		bad("keys: %s", e)
	}
	for k, s := range c.Keys {
		if k == "" || s == "" {
			bad("keys: every API key needs a name and a secret")
			break
		}
	}
	if (c.HTTP.TLSCert == "") != (c.HTTP.TLSKey == "") {
		bad("http.tls_cert and http.tls_key: give both or neither")
	}
	for _, o := range c.HTTP.AllowedOrigins {
		if o == "*" {
			continue
		}
		u, err := url.Parse(o)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" {
			bad("http.allowed_origins %q: want scheme://host[:port], e.g. https://app.example.com, or *", o)
		}
	}

	l := c.Limits
	for _, v := range []struct {
		key string
		n   int
	}{
		{"max_rooms", l.MaxRooms}, {"max_participants", l.MaxParticipants}, {"max_tracks", l.MaxTracks},
		{"max_subscriptions", l.MaxSubscriptions}, {"signaling_burst", l.SignalingBurst}, {"join_burst", l.JoinBurst},
	} {
		if v.n < 0 {
			bad("limits.%s %d: must be >= 0 (0 = unlimited)", v.key, v.n)
		}
	}
	if l.SignalingRate < 0 {
		bad("limits.signaling_rate %g: must be >= 0 (0 = unlimited)", l.SignalingRate)
	}
	if l.JoinRate < 0 {
		bad("limits.join_rate %g: must be >= 0 (0 = unlimited)", l.JoinRate)
	}
	if l.SignalingRate > 0 && l.SignalingBurst < 1 {
		bad("limits.signaling_burst %d: must be at least 1 when signaling_rate is set", l.SignalingBurst)
	}
	if l.JoinRate > 0 && l.JoinBurst < 1 {
		bad("limits.join_burst %d: must be at least 1 when join_rate is set", l.JoinBurst)
	}
	if l.MaxDataMessage < 0 || l.MaxDataMessage > 65535 {
		bad("limits.max_data_message %d: must be from 1 to 65535 bytes (0 = default 16384)", l.MaxDataMessage)
	}
	if l.MaxFrame < 0 || (l.MaxFrame > 0 && l.MaxFrame < 4096) || l.MaxFrame > 64<<20 {
		bad("limits.max_frame %d: must be from 4096 to %d bytes (0 = default 1 MiB)", l.MaxFrame, 64<<20)
	}
	if l.IdleTimeout < 0 || (l.IdleTimeout > 0 && l.IdleTimeout.Std() < time.Second) {
		bad("limits.idle_timeout %s: must be at least 1s (0 = default 30s)", l.IdleTimeout)
	}
	// Not checked against idle_timeout: a configuration with an idle
	// timeout under the 10 s pings was valid before ping_interval existed
	// (its clients must send something of their own), and stays so.
	if l.PingInterval < 0 || (l.PingInterval > 0 && l.PingInterval.Std() < 100*time.Millisecond) {
		bad("limits.ping_interval %s: must be at least 100ms (0 = default 10s)", l.PingInterval)
	}

	w := c.Webhook
	for _, u := range w.URLs {
		p, err := url.Parse(u)
		if err != nil || (p.Scheme != "http" && p.Scheme != "https") || p.Host == "" {
			bad("webhook.urls %q: want an http:// or https:// URL", u)
		}
	}
	if len(w.URLs) > 0 {
		if len(c.Keys) == 0 {
			bad("webhook.urls: webhooks are signed with an API secret; configure keys: (or $%s) first", EnvKeys)
		} else if _, ok := c.Keys[w.APIKey]; w.APIKey != "" && !ok {
			bad("webhook.api_key %q: not one of the configured keys", w.APIKey)
		}
	}
	if w.Timeout < 0 {
		bad("webhook.timeout %s: must be positive", w.Timeout)
	}
	if w.QueueSize < 0 {
		bad("webhook.queue_size %d: must be >= 0 (0 = default 1024)", w.QueueSize)
	}
	if w.MaxAttempts < 0 {
		bad("webhook.max_attempts %d: must be >= 0 (0 = default 5)", w.MaxAttempts)
	}

	t := c.TURN
	if t.Port < 0 || t.Port > 65535 {
		bad("turn.port %d: must be from 1 to 65535, or 0 to pick a free port", t.Port)
	} else if t.Enabled && t.Port != 0 && t.Port == c.RTC.UDPPort {
		bad("turn.port %d: same UDP port as rtc.udp_port", t.Port)
	} else if t.Enabled && t.TCP && t.Port != 0 && t.Port == c.RTC.TCPPort {
		bad("turn.port %d: same TCP port as rtc.tcp_port (set turn.tcp: false or another port)", t.Port)
	}
	if t.RelayIP != "" {
		if a, err := netip.ParseAddr(t.RelayIP); err != nil || a.IsUnspecified() || !a.Is4() {
			bad("turn.relay_ip %q: want an IPv4 address of this host (or its 1:1 NAT address)", t.RelayIP)
		}
	}
	if strings.ContainsAny(t.Host, "/:@ ") {
		bad("turn.host %q: want a bare host name or IPv4 address", t.Host)
	}
	if t.CredentialTTL < Duration(time.Minute) {
		bad("turn.credential_ttl %s: must be at least 1m", t.CredentialTTL)
	}
	if _, ok := c.Keys[t.APIKey]; t.APIKey != "" && !ok {
		bad("turn.api_key %q: not one of the configured keys", t.APIKey)
	}
}

// IsLoopback reports whether an HTTP listen address (host:port) only
// accepts connections from this machine: a loopback IP or "localhost".
// An empty host or 0.0.0.0/:: listens everywhere and is not loopback.
func IsLoopback(address string) bool {
	host, _, err := net.SplitHostPort(address)
	if err != nil {
		return false
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}

// OpenServerError is why a configuration without keys must not start:
// nil when it has keys, binds loopback only, or InsecureOpen is set.
func (c Config) OpenServerError() error {
	if len(c.Keys) > 0 || c.InsecureOpen || IsLoopback(c.HTTP.Address) {
		return nil
	}
	return fmt.Errorf("refusing to listen on %s without API keys: anyone could join any room. "+
		"Configure keys: in the config file or $%s (and hand out tokens, see `starling token`), "+
		"bind a loopback address, or pass --insecure-open", c.HTTP.Address, EnvKeys)
}
