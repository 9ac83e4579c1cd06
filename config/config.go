// Package config loads Starling's server configuration from defaults, a YAML file and command-line flags.
//
// Precedence, lowest to highest: Default(), the YAML file named by --config
// (or by the STARLING_CONFIG environment variable), then every flag given on
// the command line. See example.yaml next to this file for every key.
package config

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// EnvConfig names the environment variable that supplies the default for --config.
const EnvConfig = "STARLING_CONFIG"

// Config is Starling's complete server configuration.
type Config struct {
	HTTP struct {
		// Address the HTTP server (web page, /v1/rtc, /healthz) listens on.
		Address string `yaml:"address"`
		// TLSCert and TLSKey (PEM files) turn on HTTPS/WSS.
		TLSCert string `yaml:"tls_cert"`
		TLSKey  string `yaml:"tls_key"`
		// AllowedOrigins are the browser origins allowed to open the
		// signaling WebSocket besides the server's own; "*" allows any.
		AllowedOrigins []string `yaml:"allowed_origins"`
		// Pprof serves Go's profiler (CPU, heap, goroutines) at
		// /debug/pprof/ to loopback clients only.
		Pprof bool `yaml:"pprof"`
	} `yaml:"http"`
	RTC struct {
		// UDPPort is the single UDP port shared by all peers (ICE UDP mux); 0 picks a free port.
		UDPPort int `yaml:"udp_port"`
		// TCPPort is the ICE-TCP port; 0 picks a free port, -1 disables ICE-TCP.
		TCPPort int `yaml:"tcp_port"`
		// NodeIP lists public IPs to advertise (NAT 1:1); empty advertises local interface addresses.
		NodeIP []string `yaml:"node_ip"`
		// BindIP is the IP the UDP/TCP media sockets listen on; "" means all interfaces.
		BindIP string `yaml:"bind_ip"`
		// ICEServers are handed to clients when they join.
		ICEServers []ICEServer `yaml:"ice_servers"`
		// LoopbackCandidates offers 127.0.0.1 candidates, so a demo on localhost works.
		LoopbackCandidates bool `yaml:"loopback_candidates"`
		// CongestionControl estimates each subscriber's downlink (TWCC + GCC)
		// and picks simulcast layers to fit it, probing before raising.
		CongestionControl bool `yaml:"congestion_control"`
		// InitialBitrate is each subscriber's starting estimate, in bits/s.
		InitialBitrate int `yaml:"initial_bitrate"`
		// BatchSends sends media datagrams in batches (sendmmsg), one
		// sender goroutine per media socket.
		BatchSends bool `yaml:"batch_sends"`
		// GSO hands the kernel each subscriber's run of equal-size
		// datagrams as one segmented message (UDP GSO, Linux 4.18+) when
		// sends are batched.
		GSO bool `yaml:"gso"`
		// DirectSRTP encrypts subscribers' media in Starling and queues it
		// straight into the batched socket, below pion's write path.
		DirectSRTP bool `yaml:"direct_srtp"`
		// ICEFailedTimeout is how long a media connection may hear nothing
		// from its client before it fails (ice.go).
		ICEFailedTimeout Duration `yaml:"ice_failed_timeout"`
		// SenderReportInterval is how often each down track's RTCP sender
		// report goes out (ice.go).
		SenderReportInterval Duration `yaml:"sender_report_interval"`
	} `yaml:"rtc"`
	Room struct {
		// EmptyTimeout is how long an empty room lives after its last participant leaves.
		EmptyTimeout Duration `yaml:"empty_timeout"`
		// NegotiationTimeout disconnects a subscriber that never answers an offer.
		NegotiationTimeout Duration `yaml:"negotiation_timeout"`
		// ResumeWindow is how long a participant whose signaling socket
		// dropped is kept for a resume; 0 turns resume off.
		ResumeWindow Duration `yaml:"resume_window"`
	} `yaml:"room"`
	// Keys maps API keys to secrets; with any key, join needs a token (see operations.go).
	Keys map[string]string `yaml:"keys"`
	// InsecureOpen allows running without keys on a non-loopback address.
	InsecureOpen bool `yaml:"insecure_open"`
	// Limits bound clients, IPs and rooms.
	Limits Limits `yaml:"limits"`
	// Webhook delivers room events to HTTP endpoints.
	Webhook Webhook `yaml:"webhook"`
	// TURN is the embedded TURN server (operations.go).
	TURN TURN `yaml:"turn"`
	// Recordings configures the recorder (recordings.go).
	Recordings Recordings `yaml:"recordings"`
	// Cluster joins other nodes over NATS (cluster.go, docs/cluster.md).
	Cluster Cluster `yaml:"cluster"`
	// Mix tunes the live audio mix (mix.go).
	Mix Mix `yaml:"mix"`
	Log struct {
		// Level is debug, info, warn or error.
		Level string `yaml:"level"`
		// Format is text or json.
		Format string `yaml:"format"`
	} `yaml:"log"`
}

// ICEServer is a STUN or TURN server handed to clients.
type ICEServer struct {
	URLs       []string `yaml:"urls"`
	Username   string   `yaml:"username"`
	Credential string   `yaml:"credential"`
}

// Duration is a time.Duration written in YAML as a Go duration string ("10s", "1m30s").
type Duration time.Duration

// Std returns d as a time.Duration.
func (d Duration) Std() time.Duration { return time.Duration(d) }

// String formats d like time.Duration does.
func (d Duration) String() string { return time.Duration(d).String() }

// MarshalYAML writes d as a duration string.
func (d Duration) MarshalYAML() (any, error) { return d.String(), nil }

// UnmarshalYAML reads a duration string such as "10s" or "1m30s".
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	v, err := time.ParseDuration(strings.TrimSpace(n.Value))
	if n.Kind != yaml.ScalarNode || err != nil {
		return &yaml.TypeError{Errors: []string{fmt.Sprintf(
			"line %d: invalid duration %q: want a number with a unit, e.g. \"10s\" or \"1m30s\"", n.Line, n.Value)}}
	}
	*d = Duration(v)
	return nil
}

// Default returns the built-in configuration.
func Default() Config {
	var c Config
	c.HTTP.Address = "127.0.0.1:7900"
	c.RTC.UDPPort = 7901
	c.RTC.TCPPort = 7902
	c.RTC.LoopbackCandidates = true
	c.RTC.CongestionControl = true
	c.RTC.BatchSends = true
	c.RTC.GSO = true
	c.RTC.DirectSRTP = true
	c.RTC.InitialBitrate = 3_000_000
	c.RTC.ICEFailedTimeout = Duration(DefaultICEFailedTimeout)
	c.RTC.SenderReportInterval = Duration(DefaultSenderReportInterval)
	c.Room.EmptyTimeout = Duration(10 * time.Second)
	c.Room.NegotiationTimeout = Duration(15 * time.Second)
	c.Room.ResumeWindow = Duration(30 * time.Second)
	c.Log.Level = "info"
	c.Log.Format = "text"
	c.defaultOperations()
	c.Recordings.Dir = "./recordings"
	c.defaultCluster()
	c.defaultMix()
	return c
}

// Load builds the configuration from args (without the program name).
//
// It starts from Default(), applies the YAML file named by --config (default:
// $STARLING_CONFIG), then every flag present in args, and finally validates
// the result. Usage and flag errors are written to stderr. For --help it
// returns flag.ErrHelp after printing the usage.
func Load(args []string, stderr io.Writer) (Config, error) {
	return load(args, stderr, os.Getenv)
}

func load(args []string, stderr io.Writer, getenv func(string) string) (Config, error) {
	if stderr == nil {
		stderr = io.Discard
	}
	def := Default()
	fs := flag.NewFlagSet("starling", flag.ContinueOnError)
	fs.SetOutput(stderr)

	// Flag targets start at the defaults so --help shows them; values are
	// copied into the config only for flags actually given (see apply below).
	configPath := fs.String("config", getenv(EnvConfig), "YAML configuration `file`; $"+EnvConfig+" sets the default")
	bind := fs.String("bind", def.HTTP.Address, "HTTP listen `address` for the web page, /v1/rtc and /healthz (use 0.0.0.0:PORT in a container)")
	udpPort := fs.Int("udp-port", def.RTC.UDPPort, "UDP `port` shared by all peers (ICE UDP mux); 0 picks a free port")
	tcpPort := fs.Int("tcp-port", def.RTC.TCPPort, "ICE-TCP `port`; 0 picks a free port, -1 disables ICE-TCP")
	var nodeIPs listFlag
	fs.Var(&nodeIPs, "node-ip", "public `IP` to advertise (NAT 1:1); repeatable or comma-separated; none = local interface addresses")
	mediaBind := fs.String("media-bind-ip", def.RTC.BindIP, "`IP` the UDP/TCP media sockets listen on; empty = all interfaces")
	var iceServers iceServerFlag
	fs.Var(&iceServers, "ice-server", "ICE server for clients, repeatable: `URL[,URL...][,username=U,credential=C]`,\n"+
		"e.g. stun:stun.example.org:3478 or turn:turn.example.org:3478?transport=udp,username=U,credential=C")
	emptyTimeout := fs.Duration("empty-timeout", def.Room.EmptyTimeout.Std(), "close a room this long after its last participant leaves")
	negTimeout := fs.Duration("negotiation-timeout", def.Room.NegotiationTimeout.Std(), "disconnect a subscriber that has not answered an offer after this long")
	resumeWindow := fs.Duration("resume-window", def.Room.ResumeWindow.Std(), "keep a participant whose socket dropped this long for a resume; 0 turns resume off")
	loopback := fs.Bool("loopback-candidates", def.RTC.LoopbackCandidates, "offer loopback ICE candidates (for a demo on localhost)")
	congestion := fs.Bool("congestion-control", def.RTC.CongestionControl, "estimate each subscriber's downlink and fit simulcast layers to it")
	initialBitrate := fs.Int("initial-bitrate", def.RTC.InitialBitrate, "each subscriber's starting bandwidth estimate, bits/s")
	batchSends := fs.Bool("batch-sends", def.RTC.BatchSends, "send media datagrams in batches (sendmmsg), one sender per media socket")
	gso := fs.Bool("gso", def.RTC.GSO, "with batched sends, let the kernel segment each subscriber's run of datagrams (UDP GSO, Linux)")
	directSRTP := fs.Bool("direct-srtp", def.RTC.DirectSRTP, "with batched sends, encrypt subscribers' media in Starling and queue it straight to the socket, below pion's write path")
	logLevel := fs.String("log-level", def.Log.Level, "log `level`: debug, info, warn or error")
	logFormat := fs.String("log-format", def.Log.Format, "log `format`: text or json")
	applyOperationFlag := operationFlags(fs, def)
	applyRecordingFlag := recordingFlags(fs, def)
	applyClusterFlag := clusterFlags(fs, def)
	applyMixFlag := mixFlags(fs, def)
	applyICEFlag := iceFlags(fs, def)
	fs.Usage = func() { usage(fs) }

	if err := fs.Parse(args); err != nil {
		return Config{}, err
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "unexpected argument %q\n", fs.Arg(0))
		fs.Usage()
		return Config{}, fmt.Errorf("unexpected argument %q (all options are flags; see --help)", fs.Arg(0))
	}

	cfg := def
	if *configPath != "" {
		if err := cfg.loadFile(*configPath); err != nil {
			return Config{}, err
		}
	}
	if err := cfg.applyEnvKeys(getenv); err != nil {
		return Config{}, err
	}
	cfg.applyEnvRecordings(getenv)
	cfg.applyEnvCluster(getenv)

	fs.Visit(func(f *flag.Flag) {
		applyOperationFlag(&cfg, f.Name)
		applyRecordingFlag(&cfg, f.Name)
		applyClusterFlag(&cfg, f.Name)
		applyMixFlag(&cfg, f.Name)
		applyICEFlag(&cfg, f.Name)
		switch f.Name {
		case "bind":
			cfg.HTTP.Address = *bind
		case "udp-port":
			cfg.RTC.UDPPort = *udpPort
		case "tcp-port":
			cfg.RTC.TCPPort = *tcpPort
		case "node-ip":
			cfg.RTC.NodeIP = []string(nodeIPs)
		case "media-bind-ip":
			cfg.RTC.BindIP = *mediaBind
		case "ice-server":
			cfg.RTC.ICEServers = []ICEServer(iceServers)
		case "empty-timeout":
			cfg.Room.EmptyTimeout = Duration(*emptyTimeout)
		case "negotiation-timeout":
			cfg.Room.NegotiationTimeout = Duration(*negTimeout)
		case "resume-window":
			cfg.Room.ResumeWindow = Duration(*resumeWindow)
		case "loopback-candidates":
			cfg.RTC.LoopbackCandidates = *loopback
		case "congestion-control":
			cfg.RTC.CongestionControl = *congestion
		case "initial-bitrate":
			cfg.RTC.InitialBitrate = *initialBitrate
		case "batch-sends":
			cfg.RTC.BatchSends = *batchSends
		case "gso":
			cfg.RTC.GSO = *gso
		case "direct-srtp":
			cfg.RTC.DirectSRTP = *directSRTP
		case "log-level":
			cfg.Log.Level = *logLevel
		case "log-format":
			cfg.Log.Format = *logFormat
		}
	})

	if err := cfg.Validate(); err != nil {
		return Config{}, err
	}
	if lvl, ok := parseLevel(cfg.Log.Level); ok {
		cfg.Log.Level = strings.ToLower(lvl.String()) // "WARN" -> "warn", "warning" -> "warn"
	}
	cfg.Log.Format = strings.ToLower(cfg.Log.Format)
	return cfg, nil
}

// usage prints every flag with its default, including empty ones.
func usage(fs *flag.FlagSet) {
	w := fs.Output()
	fmt.Fprintf(w, "Usage: %s [flags]\n\nStarling WebRTC SFU. Flags override the --config file, which overrides defaults.\n\nFlags:\n", fs.Name())
	fs.VisitAll(func(f *flag.Flag) {
		name, text := flag.UnquoteUsage(f)
		fmt.Fprintf(w, "  --%s", f.Name)
		if name != "" {
			fmt.Fprintf(w, " %s", name)
		}
		def := f.DefValue
		if def == "" {
			def = "none"
		}
		text = strings.ReplaceAll(text, "\n", "\n    \t")
		fmt.Fprintf(w, "\n    \t%s (default: %s)\n", text, def)
	})
}

// listFlag collects a repeatable, comma-separated string flag.
type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, ",") }

func (l *listFlag) Set(s string) error {
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			*l = append(*l, p)
		}
	}
	return nil
}

// Validate reports every invalid setting, one per line, each naming its YAML key.
func (c Config) Validate() error {
	var errs []string
	bad := func(format string, args ...any) { errs = append(errs, fmt.Sprintf(format, args...)) }

	httpHost, httpPort, err := net.SplitHostPort(c.HTTP.Address)
	if err != nil {
		bad("http.address %q: want host:port, e.g. 127.0.0.1:7900 or 0.0.0.0:7900 (%v)", c.HTTP.Address, err)
	} else if p, err := strconv.Atoi(httpPort); err != nil || p < 0 || p > 65535 {
		bad("http.address %q: port must be a number from 0 to 65535", c.HTTP.Address)
	} else if c.RTC.TCPPort > 0 && p == c.RTC.TCPPort && overlaps(httpHost, c.RTC.BindIP) {
		bad("rtc.tcp_port %d: same TCP port as http.address %q; pick another port or -1 to disable ICE-TCP", c.RTC.TCPPort, c.HTTP.Address)
	}

	if c.RTC.UDPPort < 0 || c.RTC.UDPPort > 65535 {
		bad("rtc.udp_port %d: must be from 1 to 65535, or 0 to pick a free port", c.RTC.UDPPort)
	}
	if c.RTC.TCPPort < -1 || c.RTC.TCPPort > 65535 {
		bad("rtc.tcp_port %d: must be from 1 to 65535, 0 to pick a free port, or -1 to disable ICE-TCP", c.RTC.TCPPort)
	}
	if c.RTC.InitialBitrate < 100_000 || c.RTC.InitialBitrate > 50_000_000 {
		bad("rtc.initial_bitrate %d: must be from 100000 to 50000000 bits/s", c.RTC.InitialBitrate)
	}
	for _, ip := range c.RTC.NodeIP {
		a, err := netip.ParseAddr(ip)
		if err != nil || a.Zone() != "" {
			bad("rtc.node_ip %q: not an IP address", ip)
		} else if a.IsUnspecified() {
			bad("rtc.node_ip %q: an unspecified address cannot be advertised", ip)
		}
	}
	if c.RTC.BindIP != "" {
		if _, err := netip.ParseAddr(c.RTC.BindIP); err != nil {
			bad("rtc.bind_ip %q: not an IP address (leave empty for all interfaces)", c.RTC.BindIP)
		}
	}
	for i, s := range c.RTC.ICEServers {
		if len(s.URLs) == 0 {
			bad("rtc.ice_servers[%d]: no urls", i)
		}
		for _, u := range s.URLs {
			turn, err := checkICEURL(u)
			if err != nil {
				bad("rtc.ice_servers[%d].urls %q: %v", i, u, err)
			} else if turn && (s.Username == "" || s.Credential == "") {
				bad("rtc.ice_servers[%d].urls %q: TURN needs a username and a credential", i, u)
			}
		}
	}

	if c.Room.EmptyTimeout <= 0 {
		bad("room.empty_timeout %s: must be positive", c.Room.EmptyTimeout)
	}
	if c.Room.NegotiationTimeout <= 0 {
		bad("room.negotiation_timeout %s: must be positive", c.Room.NegotiationTimeout)
	}
	if c.Room.ResumeWindow < 0 {
		bad("room.resume_window %s: must not be negative (0 turns resume off)", c.Room.ResumeWindow)
	}

	if _, ok := parseLevel(c.Log.Level); !ok {
		bad("log.level %q: want debug, info, warn or error", c.Log.Level)
	}
	switch strings.ToLower(c.Log.Format) {
	case "text", "json":
	default:
		bad("log.format %q: want text or json", c.Log.Format)
	}
	c.validateOperations(bad)
	c.validateRecordings(bad)
	c.validateCluster(bad)
	c.validateMix(bad)
	c.validateICE(bad)
	if len(errs) == 0 {
		return nil
	}
	return errors.New("invalid configuration:\n  " + strings.Join(errs, "\n  "))
}

// overlaps reports whether two listen hosts can collide on the same port.
func overlaps(a, b string) bool {
	unspecified := func(h string) bool {
		ip, err := netip.ParseAddr(h)
		return h == "" || (err == nil && ip.IsUnspecified())
	}
	return unspecified(a) || unspecified(b) || a == b
}

func parseLevel(s string) (slog.Level, bool) {
	switch strings.ToLower(s) {
	case "debug":
		return slog.LevelDebug, true
	case "info":
		return slog.LevelInfo, true
	case "warn", "warning":
		return slog.LevelWarn, true
	case "error":
		return slog.LevelError, true
	}
	return slog.LevelInfo, false
}

// Logger returns a slog.Logger writing to w in the configured format (text
// or JSON) at the configured level. Unknown values fall back to text/info.
func (c Config) Logger(w io.Writer) *slog.Logger {
	level, _ := parseLevel(c.Log.Level)
	opts := &slog.HandlerOptions{Level: level}
	if strings.EqualFold(c.Log.Format, "json") {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}
