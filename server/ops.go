package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/starling-rtc/starling/admin"
	"github.com/starling-rtc/starling/config"
	"github.com/starling-rtc/starling/metrics"
	"github.com/starling-rtc/starling/room"
	"github.com/starling-rtc/starling/signaling"
	"github.com/starling-rtc/starling/turnsrv"
	"github.com/starling-rtc/starling/webhook"
)

// Metrics is the node's Prometheus registry.
func (s *Server) Metrics() *metrics.Metrics { return s.metrics }

// extras is the state issue #7 adds to a Server.
type extras struct {
	joinOnce    sync.Once
	joinLimiter *signaling.IPLimiter
	tls         bool              // the HTTP listener speaks TLS
	webhooks    *webhook.Notifier // nil without webhook URLs
	turn        *turnsrv.Server   // nil when TURN is off (turn.go)
	stops       []func(context.Context) error
}

// signalingOptions configure the WebSocket transport.
func (s *Server) signalingOptions() signaling.Options {
	l := s.cfg.Limits
	return signaling.Options{
		Logger: s.log, Observe: s.metrics.ObserveSignaling,
		MaxFrame: l.MaxFrame, ReadTimeout: l.IdleTimeout.Std(), PingInterval: l.PingInterval.Std(),
		RateLimit: l.SignalingRate, RateBurst: l.SignalingBurst,
		CheckOrigin: signaling.OriginChecker(s.cfg.HTTP.AllowedOrigins),
	}
}

// joinLimiter is the node's per-IP join rate limiter (nil = unlimited).
func (s *Server) joinLimiter() *signaling.IPLimiter {
	s.ext.joinOnce.Do(func() {
		s.ext.joinLimiter = signaling.NewIPLimiter(s.cfg.Limits.JoinRate, s.cfg.Limits.JoinBurst)
	})
	return s.ext.joinLimiter
}

func roomLimits(l config.Limits) room.Limits {
	return room.Limits{
		MaxRooms: l.MaxRooms, MaxParticipants: l.MaxParticipants, MaxTracks: l.MaxTracks,
		MaxSubscriptions: l.MaxSubscriptions, MaxDataMessage: l.MaxDataMessage,
	}
}

// setupOperations applies the room limits, turns on TLS, starts the
// webhook notifier and adds /metrics, /readyz and the admin API
// (/v1/rooms...). On error it has undone what it started.
func (s *Server) setupOperations(mux *http.ServeMux) (err error) {
	defer func() {
		if err != nil {
			s.stopOperations(context.Background())
		}
	}()
	s.rooms.SetLimits(roomLimits(s.cfg.Limits)) // before anyone can join
	if err := s.setupTLS(); err != nil {
		return err
	}
	if err := s.setupWebhooks(); err != nil {
		return err
	}
	if err := s.setupTURN(); err != nil {
		return err
	}
	if err := s.setupRecorder(mux); err != nil {
		return err
	}
	admin.New(admin.Options{
		Rooms: s.rooms, Auth: s.auth, MaxDataMessage: s.cfg.Limits.MaxDataMessage, Logger: s.log,
		Nodes: s.clusterNodes, RemoteRoom: s.remoteRoom, CloseRemote: s.closeRemote, // see cluster.go
		ClusterRooms: s.clusterRooms, SetMix: s.setMix, ControlRemote: s.controlRemote, DataRemote: s.dataRemote,
		CheckOrigin: signaling.OriginChecker(s.cfg.HTTP.AllowedOrigins),
	}).Register(mux)
	mux.Handle("GET /metrics", s.metrics.Handler())
	if s.cfg.HTTP.Pprof {
		registerPprof(mux)
	}
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if s.rooms.Draining() {
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte(`{"status":"draining"}` + "\n"))
			return
		}
		_, _ = w.Write([]byte(`{"status":"ready"}` + "\n"))
	})
	return nil
}

// stopOperations stops what setupOperations started, after the rooms have
// closed (so their last events are queued). It waits at most 3 s.
func (s *Server) stopOperations(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	for i := len(s.ext.stops) - 1; i >= 0; i-- {
		if err := s.ext.stops[i](ctx); err != nil {
			s.log.Warn("shutdown", "err", err)
		}
	}
	s.ext.stops = nil
}

// setupTLS wraps the HTTP listener in TLS when a certificate is configured.
func (s *Server) setupTLS() error {
	c := s.cfg.HTTP
	if c.TLSCert == "" {
		return nil
	}
	cert, err := tls.LoadX509KeyPair(c.TLSCert, c.TLSKey)
	if err != nil {
		return fmt.Errorf("TLS certificate %s / key %s: %w", c.TLSCert, c.TLSKey, err)
	}
	s.ln = tls.NewListener(s.ln, &tls.Config{
		Certificates: []tls.Certificate{cert},
		MinVersion:   tls.VersionTLS12,
		NextProtos:   []string{"http/1.1"}, // WebSocket upgrades need HTTP/1.1
	})
	s.ext.tls = true
	return nil
}

// BaseURL is http://host:port, or https:// with TLS.
func (s *Server) BaseURL() string {
	if s.ext.tls {
		return "https://" + s.Addr()
	}
	return "http://" + s.Addr()
}

// wsBaseURL is ws://host:port, or wss:// with TLS.
func (s *Server) wsBaseURL() string {
	if s.ext.tls {
		return "wss://" + s.Addr()
	}
	return "ws://" + s.Addr()
}

// setupWebhooks starts the notifier when webhook URLs are configured.
func (s *Server) setupWebhooks() error {
	w := s.cfg.Webhook
	if len(w.URLs) == 0 {
		return nil
	}
	key := w.APIKey
	if key == "" {
		keys := s.auth.Keys()
		if len(keys) == 0 {
			return errors.New("webhooks need an API key to sign with: configure keys")
		}
		key = keys[0]
	}
	secret, ok := s.auth.Secret(key)
	if !ok {
		return fmt.Errorf("webhook.api_key %q is not a configured key", key)
	}
	n := webhook.New(webhook.Config{
		URLs: w.URLs, APIKey: key, Secret: secret, Timeout: w.Timeout.Std(),
		QueueSize: w.QueueSize, MaxAttempts: w.MaxAttempts, Logger: s.log,
	})
	remove := s.rooms.AddObserver(webhookObserver{n, s}) // see cluster.go
	s.metrics.Registry().MustRegister(n.Collectors()...)
	s.ext.webhooks = n
	s.ext.stops = append(s.ext.stops, func(ctx context.Context) error {
		remove()
		return n.Close(ctx)
	})
	s.log.Info("webhooks on", "urls", len(w.URLs), "api_key", key)
	return nil
}
