package sfu

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/logging"
	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"
)

// EngineConfig says where media sockets listen and what they advertise.
type EngineConfig struct {
	BindIP             string   // IP for the UDP and TCP media sockets; "" = all interfaces
	UDPPort            int      // one UDP port for every peer (ICE UDP mux); 0 = any free port
	TCPPort            int      // ICE-TCP port; 0 = any free port; < 0 = ICE-TCP off
	NodeIPs            []string // public IPs advertised instead of local ones (NAT 1:1)
	LoopbackCandidates bool     // offer 127.0.0.1 candidates (local demos and tests)
	// BandwidthEstimation runs send-side congestion control (TWCC feedback,
	// GCC) on every subscriber connection so layers fit each downlink.
	BandwidthEstimation bool
	InitialBitrate      int // starting estimate in bits/s (default 3 Mbit/s)
	// BatchSends sends each media socket's datagrams in batches (sendmmsg)
	// from one goroutine per socket (batchconn.go).
	BatchSends bool
	// GSO lets batched sends hand the kernel each peer's run of equal-size
	// datagrams as one segmented message (UDP_SEGMENT), where it has it.
	GSO bool
	// DirectSRTP encrypts subscribers' RTP in Starling and queues it
	// straight into the batched socket, below pion's write path
	// (srtpdirect.go). Needs BatchSends.
	DirectSRTP bool
	// ICEFailedTimeout: a connection that hears nothing from its client
	// this long fails (and its participant leaves); 0 = pion's 30 s.
	ICEFailedTimeout time.Duration
	// SenderReportInterval: how often each down track sends its RTCP
	// sender report; 0 = 1 s.
	SenderReportInterval time.Duration
	Logger               *slog.Logger
}

// Engine owns the shared media sockets and builds peer connections on them.
type Engine struct {
	api     *webrtc.API
	media   *webrtc.MediaEngine
	ir      *interceptor.Registry
	se      webrtc.SettingEngine
	direct  bool // subscriber connections send through srtpdirect.go
	sockMu  sync.Mutex
	sockets []*batchConn // the batched media sockets, for the direct path
	udp     net.PacketConn
	tcp     *trackedListener
	udpMux  ice.UDPMux
	tcpMux  ice.TCPMux
	log     *slog.Logger
	logs    logging.LoggerFactory
	udpPort int
	tcpPort int

	bwe            bool // subscriber connections run congestion control (bwe.go)
	initialBitrate int
	bweCounts      bweCounts     // their estimators' events (BWECounters)
	plisReceived   atomic.Uint64 // keyframe requests read from its subscribers (PLIsReceived)
}

// audioLevelURI is RFC 6464's header extension; speakers detection reads it.
const audioLevelURI = "urn:ietf:params:rtp-hdrext:ssrc-audio-level"

// NewEngine opens the media sockets. Close releases them.
func NewEngine(cfg EngineConfig) (*Engine, error) {
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	e := &Engine{log: log, logs: NewLoggerFactory(log)}
	if ip := net.ParseIP(cfg.BindIP); ip != nil && !ip.IsUnspecified() {
		udp, err := net.ListenPacket("udp", net.JoinHostPort(cfg.BindIP, strconv.Itoa(cfg.UDPPort)))
		if err != nil {
			return nil, fmt.Errorf("media UDP port %d: %w", cfg.UDPPort, err)
		}
		if uc, ok := udp.(*net.UDPConn); ok {
			growBuffers(uc)
			if cfg.BatchSends {
				bc := newBatchConn(uc, cfg.GSO, log)
				e.addSocket(bc)
				udp = bc
			}
		}
		e.udp = udp
		e.udpPort = udp.LocalAddr().(*net.UDPAddr).Port
		e.udpMux = webrtc.NewICEUDPMux(e.logs.NewLogger("udpmux"), udp)
	} else {
		// On every interface pion wants one socket per local address (same
		// port), so each host candidate maps to the socket that owns it.
		opts := []ice.UDPMuxFromPortOption{
			ice.UDPMuxFromPortWithLogger(e.logs.NewLogger("udpmux")),
			ice.UDPMuxFromPortWithNetworks(ice.NetworkTypeUDP4),
		}
		if cfg.LoopbackCandidates {
			opts = append(opts, ice.UDPMuxFromPortWithLoopback())
		}
		if cfg.BatchSends {
			n, err := newBatchNet(cfg.GSO, log, e.addSocket)
			if err != nil {
				return nil, fmt.Errorf("media network: %w", err)
			}
			opts = append(opts, ice.UDPMuxFromPortWithNet(n))
		}
		mux, err := ice.NewMultiUDPMuxFromPort(cfg.UDPPort, opts...)
		if err != nil {
			return nil, fmt.Errorf("media UDP port %d: %w", cfg.UDPPort, err)
		}
		e.udpMux = mux
		e.udpPort = cfg.UDPPort
		if addrs := mux.GetListenAddresses(); len(addrs) > 0 {
			e.udpPort = addrs[0].(*net.UDPAddr).Port
		}
	}

	// pion's connections on the mux are wrapped so that an ICE restart
	// cannot close a peer connection (restartmux.go).
	e.udpMux = newRestartMux(e.udpMux)
	se := webrtc.SettingEngine{LoggerFactory: e.logs}
	se.SetICEUDPMux(e.udpMux)
	networks, err := mediaNetworks(cfg.BindIP, cfg.NodeIPs, cfg.TCPPort >= 0, log)
	if err != nil {
		e.Close()
		return nil, err
	}
	if cfg.TCPPort >= 0 {
		tcp, err := net.Listen("tcp", net.JoinHostPort(cfg.BindIP, strconv.Itoa(cfg.TCPPort)))
		if err != nil {
			e.Close()
			return nil, fmt.Errorf("media TCP port %d: %w", cfg.TCPPort, err)
		}
		e.tcp = newTrackedListener(tcp)
		e.tcpPort = tcp.Addr().(*net.TCPAddr).Port
		e.tcpMux = newRestartTCPMux(newTCPMux(e.logs.NewLogger("tcpmux"), e.tcp))
		se.SetICETCPMux(e.tcpMux)
	}
	se.SetNetworkTypes(networks)
	if cfg.ICEFailedTimeout > 0 {
		disconnected, failed := iceTimeouts(cfg.ICEFailedTimeout)
		se.SetICETimeouts(disconnected, failed, iceKeepalive)
	}
	se.SetICEMaxBindingRequests(iceCheckRetries)
	se.SetIncludeLoopbackCandidate(cfg.LoopbackCandidates)
	if ip := net.ParseIP(cfg.BindIP); ip != nil && !ip.IsUnspecified() {
		// Media sockets listen on one address: advertise only that one.
		se.SetIPFilter(func(c net.IP) bool { return c.Equal(ip) })
		se.SetIncludeLoopbackCandidate(cfg.LoopbackCandidates || ip.IsLoopback())
	}
	if len(cfg.NodeIPs) > 0 {
		// Behind NAT 1:1 the host candidates carry the public IPs instead.
		if err := se.SetICEAddressRewriteRules(webrtc.ICEAddressRewriteRule{
			External: cfg.NodeIPs, AsCandidateType: webrtc.ICECandidateTypeHost, Mode: webrtc.ICEAddressRewriteReplace,
		}); err != nil {
			e.Close()
			return nil, fmt.Errorf("node IPs %v: %w", cfg.NodeIPs, err)
		}
	}
	// Without mDNS, local candidates are plain IPs: the SFU is a server, not a browser.
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)

	m := &webrtc.MediaEngine{}
	if err := registerCodecs(m); err != nil {
		e.Close()
		return nil, err
	}
	ir := &interceptor.Registry{}
	if cfg.BandwidthEstimation {
		if err := e.registerBWE(m, cfg.InitialBitrate); err != nil {
			e.Close()
			return nil, err
		}
	}
	if err := registerSFUInterceptors(m, ir, e.logs, cfg.SenderReportInterval); err != nil {
		e.Close()
		return nil, err
	}
	e.api = webrtc.NewAPI(webrtc.WithMediaEngine(m), webrtc.WithInterceptorRegistry(ir),
		webrtc.WithSettingEngine(se))
	e.media, e.ir, e.se = m, ir, se
	e.direct = cfg.DirectSRTP && cfg.BatchSends
	return e, nil
}

// registerBWE negotiates the transport-wide sequence number header
// extension, which TWCC feedback refers to. Each subscriber connection gets
// its own estimator (bweInterceptor, in newSubscriberPC); there is no
// pacer: the SFU forwards at the rate media arrives, and the allocator
// picks layers to fit the estimate.
func (e *Engine) registerBWE(m *webrtc.MediaEngine, initial int) error {
	if initial <= 0 {
		initial = 3_000_000
	}
	e.bwe, e.initialBitrate = true, initial
	if err := m.RegisterHeaderExtension(webrtc.RTPHeaderExtensionCapability{URI: sdp.TransportCCURI}, webrtc.RTPCodecTypeVideo); err != nil {
		return err
	}
	return m.RegisterHeaderExtension(webrtc.RTPHeaderExtensionCapability{URI: sdp.TransportCCURI}, webrtc.RTPCodecTypeAudio)
}

// registerCodecs registers every codec browsers offer that Starling forwards,
// plus the header extensions it reads.
func registerCodecs(m *webrtc.MediaEngine) error {
	if err := m.RegisterDefaultCodecs(); err != nil {
		return err
	}
	// RED (redundant Opus) as browsers offer it; forwarded as is to
	// subscribers that accept it, unwrapped to plain Opus for the others.
	if err := m.RegisterCodec(webrtc.RTPCodecParameters{
		RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: MimeTypeRED, ClockRate: 48000, Channels: 2, SDPFmtpLine: "111/111"},
		PayloadType:        63,
	}, webrtc.RTPCodecTypeAudio); err != nil {
		return err
	}
	for _, typ := range []webrtc.RTPCodecType{webrtc.RTPCodecTypeAudio} {
		if err := m.RegisterHeaderExtension(webrtc.RTPHeaderExtensionCapability{URI: audioLevelURI}, typ); err != nil {
			return err
		}
	}
	return m.RegisterHeaderExtension(webrtc.RTPHeaderExtensionCapability{URI: sdp.SDESMidURI}, webrtc.RTPCodecTypeAudio)
}

// NewPeerConnection builds a peer connection on the shared sockets.
func (e *Engine) NewPeerConnection(iceServers []webrtc.ICEServer) (*webrtc.PeerConnection, error) {
	return e.api.NewPeerConnection(peerConfig(iceServers))
}

// peerConfig is every Starling connection's configuration: one transport
// (BUNDLE, RTCP multiplexed) to each client.
func peerConfig(iceServers []webrtc.ICEServer) webrtc.Configuration {
	return webrtc.Configuration{
		ICEServers:    iceServers,
		BundlePolicy:  webrtc.BundlePolicyMaxBundle,
		RTCPMuxPolicy: webrtc.RTCPMuxPolicyRequire,
	}
}

// newSubscriberPC builds a subscriber's peer connection, on an API of its
// own when it has interceptors of its own: with the direct send path, its
// directSender (first: innermost, under every shared interceptor), whose
// DTLS hooks learn this connection's keys; with congestion control, its
// bweInterceptor (next: it hands packets straight to the directSender).
func (e *Engine) newSubscriberPC(iceServers []webrtc.ICEServer) (*webrtc.PeerConnection, *bweInterceptor, error) {
	if !e.direct && !e.bwe {
		pc, err := e.NewPeerConnection(iceServers)
		return pc, nil, err
	}
	se := e.se
	ir := &interceptor.Registry{}
	var ds *directSender
	if e.direct {
		ds = &directSender{}
		se.SetDTLSKeyLogWriter(&ds.keys)
		se.SetDTLSServerHelloMessageHook(ds.keys.serverHello)
		ir.Add(ds)
	}
	var bw *bweInterceptor
	if e.bwe {
		bw = newBWEInterceptor(e.initialBitrate)
		bw.est.counts = &e.bweCounts
		ir.Add(bw)
	}
	if ds != nil && bw != nil {
		ds.tap = &rtcpTap{est: bw.est}
	}
	ir.Add(registryFactory{e.ir})
	api := webrtc.NewAPI(webrtc.WithMediaEngine(e.media), webrtc.WithInterceptorRegistry(ir),
		webrtc.WithSettingEngine(se))
	cfg := peerConfig(iceServers)
	if ds != nil {
		// Header extensions in the clear, as Starling's own encryption
		// does them (RFC 9335's cryptex is pion's to apply).
		cfg.RTPHeaderEncryptionPolicy = webrtc.RTPHeaderEncryptionPolicyDisable
	}
	pc, err := api.NewPeerConnection(cfg)
	if err != nil {
		return nil, nil, err
	}
	if ds != nil {
		e.watchDirect(pc, ds)
	}
	return pc, bw, nil
}

// UDPPort is the media UDP port actually bound.
func (e *Engine) UDPPort() int { return e.udpPort }

// UDPPorts are the media UDP ports bound: one, or on every interface with
// a free port asked for (0), one per interface address. The embedded TURN
// server relays to these only.
func (e *Engine) UDPPorts() []int {
	ports := []int{e.udpPort}
	for _, a := range e.udpMux.GetListenAddresses() {
		if u, ok := a.(*net.UDPAddr); ok && !slices.Contains(ports, u.Port) {
			ports = append(ports, u.Port)
		}
	}
	return ports
}

// TCPPort is the ICE-TCP port actually bound, or 0 when ICE-TCP is off.
func (e *Engine) TCPPort() int { return e.tcpPort }

// Logger is the engine's logger.
func (e *Engine) Logger() *slog.Logger { return e.log }

// Close closes the media sockets; peer connections must be closed first.
func (e *Engine) Close() {
	var errs []error
	if e.udpMux != nil {
		errs = append(errs, e.udpMux.Close())
	}
	if e.tcp != nil {
		e.tcp.closeAll() // before the mux's Close, which waits for them (tcpmux.go)
	}
	if e.tcpMux != nil {
		errs = append(errs, e.tcpMux.Close())
	}
	if e.udp != nil {
		_ = e.udp.Close()
	}
	if err := errors.Join(errs...); err != nil {
		e.log.Debug("closing media sockets", "err", err)
	}
}

// iceCheckRetries is how many connectivity checks a connection sends on a
// candidate pair before giving it up, 200 ms apart: 10 s. On a subscriber
// connection the server offers, so it is the controlling agent, the only
// side that nominates a pair. With pion's default, 7 (1.6 s), a client
// whose ICE agent started late (a busy machine: checks that arrive before
// it has the server's credentials are discarded) lost the connection: the
// server gave its only pair up for good, the client's own checks changed
// nothing, and the connection stayed "checking" until ICE failed. Browsers
// check a pair for seconds too.
const iceCheckRetries = 50

// iceKeepalive is how often an idle connection sends an ICE check (pion's default).
const iceKeepalive = 2 * time.Second

// iceTimeouts splits the silence after which a connection fails into
// pion's two steps: disconnected after a third of it (3-5 s; a state
// media comes back from), failed after the rest.
func iceTimeouts(total time.Duration) (disconnected, failed time.Duration) {
	disconnected = min(max(total/3, 3*time.Second), 5*time.Second)
	return disconnected, total - disconnected
}
