// Package server assembles one Starling node: the media engine, the rooms,
// and the HTTP routes (signaling WebSocket, health, web app). cmd/starling
// runs it; tests start the very same server in-process.
package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/pion/webrtc/v4"
	"github.com/starling-rtc/starling/auth"
	"github.com/starling-rtc/starling/cluster"
	"github.com/starling-rtc/starling/config"
	"github.com/starling-rtc/starling/metrics"
	"github.com/starling-rtc/starling/recorder"
	"github.com/starling-rtc/starling/room"
	"github.com/starling-rtc/starling/sfu"
	"github.com/starling-rtc/starling/signaling"
	"github.com/starling-rtc/starling/signaling/whip"
	"github.com/starling-rtc/starling/web"
)

// Server is a running node.
type Server struct {
	cfg      config.Config
	log      *slog.Logger
	engine   *sfu.Engine
	rooms    *room.Manager
	http     *http.Server
	ln       net.Listener
	serveCh  chan error
	auth     *auth.Verifier // see security.go
	metrics  *metrics.Metrics
	ext      extras // see ops.go
	socks    sockets
	recorder *recorder.Manager // see recording.go
	cluster  *cluster.Node     // nil on a single node (cluster.go)
	whip     *whip.Handler     // see whip.go
	started  time.Time         // GET /v1/nodes of a single node (cluster.go)
}

// New opens the media and HTTP sockets; Serve starts answering.
func New(cfg config.Config, log *slog.Logger) (*Server, error) {
	if log == nil {
		log = slog.Default()
	}
	if err := cfg.OpenServerError(); err != nil {
		return nil, err
	}
	engine, err := sfu.NewEngine(sfu.EngineConfig{
		BindIP: cfg.RTC.BindIP, UDPPort: cfg.RTC.UDPPort, TCPPort: cfg.RTC.TCPPort,
		NodeIPs: cfg.RTC.NodeIP, LoopbackCandidates: cfg.RTC.LoopbackCandidates, Logger: log,
		BandwidthEstimation: cfg.RTC.CongestionControl, InitialBitrate: cfg.RTC.InitialBitrate,
		BatchSends:       cfg.RTC.BatchSends,
		GSO:              cfg.RTC.GSO,
		DirectSRTP:       cfg.RTC.DirectSRTP,
		ICEFailedTimeout: cfg.RTC.ICEFailedTimeout.Std(),
		// how often subscribers get each track's sender report
		SenderReportInterval: cfg.RTC.SenderReportInterval.Std(),
	})
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", cfg.HTTP.Address)
	if err != nil {
		engine.Close()
		return nil, fmt.Errorf("HTTP address %s: %w", cfg.HTTP.Address, err)
	}
	s := &Server{cfg: cfg, log: log, engine: engine, ln: ln, serveCh: make(chan error, 1), auth: auth.NewVerifier(cfg.Keys), started: time.Now()}
	s.rooms = room.NewManager(room.Config{
		Engine: engine, ICEServers: iceServers(cfg.RTC.ICEServers),
		EmptyTimeout: cfg.Room.EmptyTimeout.Std(), NegotiationTimeout: cfg.Room.NegotiationTimeout.Std(), ResumeWindow: cfg.Room.ResumeWindow.Std(),
		Logger: log, Mix: cfg.MixerConfig(),
	})
	s.metrics = metrics.New(s.rooms)
	mux := http.NewServeMux()
	mux.Handle("GET /v1/rtc", signaling.NewHandler(s.signalingOptions(),
		func(c *signaling.Conn, _ *http.Request) signaling.Dispatcher {
			return s.socks.track(c, signaling.NewSessionWithOptions(c, s.rooms, log, s.sessionOptions()))
		}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"status":"ok"}` + "\n"))
	})
	if err := s.setupOperations(mux); err != nil { // see ops.go
		engine.Close()
		_ = ln.Close()
		return nil, err
	}
	if err := s.setupCluster(); err != nil { // see cluster.go
		s.stopOperations(context.Background())
		engine.Close()
		_ = s.ln.Close()
		return nil, err
	}
	s.setupWHIP(mux)
	mux.Handle("/", web.Handler())
	// An idle keep-alive connection is closed after limits.idle_timeout, as
	// a silent signaling connection is: without it, clients that never close
	// theirs (or vanish) hold one socket each for good. A hijacked WebSocket
	// is not the HTTP server's any more and keeps its own timeout.
	idle := cfg.Limits.IdleTimeout.Std()
	if idle <= 0 {
		idle = 30 * time.Second
	}
	s.http = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: idle,
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelDebug)}
	return s, nil
}

func iceServers(in []config.ICEServer) []webrtc.ICEServer {
	out := make([]webrtc.ICEServer, 0, len(in))
	for _, s := range in {
		out = append(out, webrtc.ICEServer{URLs: s.URLs, Username: s.Username, Credential: s.Credential})
	}
	return out
}

// Serve answers HTTP until Shutdown; it returns at once.
func (s *Server) Serve() {
	go func() {
		err := s.http.Serve(s.ln)
		if errors.Is(err, http.ErrServerClosed) {
			err = nil
		}
		s.serveCh <- err
	}()
	s.log.Info("starling listening",
		"http", s.BaseURL(), "udp", s.engine.UDPPort(), "tcp", s.engine.TCPPort())
	s.logSecurity()
}

// Addr is the HTTP listen address (host:port).
func (s *Server) Addr() string { return s.ln.Addr().String() }

// SignalingURL is the WebSocket URL clients join on.
func (s *Server) SignalingURL() string { return s.wsBaseURL() + "/v1/rtc" }

// Rooms is the node's room manager.
func (s *Server) Rooms() *room.Manager { return s.rooms }

// Engine is the node's media engine.
func (s *Server) Engine() *sfu.Engine { return s.engine }

// Shutdown stops joins, sends `leave` to everyone, closes rooms, then the
// HTTP server and the media sockets.
func (s *Server) Shutdown(ctx context.Context) error {
	if s.cluster != nil {
		s.cluster.Drain() // clients resume through the other nodes (docs/cluster.md)
	}
	errRooms := s.rooms.Shutdown(ctx)
	s.socks.closeAll() // sockets that never joined got no leave from the rooms
	errHTTP := s.http.Shutdown(ctx)
	s.engine.Close()
	s.stopCluster()       // after the rooms: their leaving is on the bus
	s.stopOperations(ctx) // webhooks flush the rooms' last events
	var errServe error
	select {
	case errServe = <-s.serveCh:
	default:
	}
	return errors.Join(errRooms, errHTTP, errServe)
}
