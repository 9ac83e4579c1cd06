package server

import (
	"encoding/json"
	"github.com/prometheus/client_golang/prometheus"
	"net/http"
	"strings"

	"github.com/starling-rtc/starling/admin"
	"github.com/starling-rtc/starling/internal/loopback"
	"github.com/starling-rtc/starling/protocol"
	"github.com/starling-rtc/starling/recorder"
	"github.com/starling-rtc/starling/signaling"
	"github.com/starling-rtc/starling/webhook"
)

// setupRecorder starts the recording manager (auto-record, its HTTP routes
// under /v1/rooms/{room}/recordings, webhook events) and registers its
// Close, which finalises open files, to run at shutdown after the rooms.
func (s *Server) setupRecorder(mux *http.ServeMux) error {
	rc := s.cfg.Recordings
	rec, err := recorder.NewManager(s.rooms, recorder.Config{
		Dir: rc.Dir, AutoRecord: rc.AutoRecord, AutoMix: rc.Mix, Compose: rc.Compose, Logger: s.log,
		OnEvent: s.recordingEvent,
	})
	if err != nil {
		return err
	}
	s.recorder = rec
	s.metrics.Registry().MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: "starling", Name: "recordings", Help: "Recordings running (room and track recordings).",
	}, func() float64 { return float64(rec.Active()) }))
	rec.Register(mux, s.requireRecordGrant)
	s.ext.stops = append(s.ext.stops, rec.Close)
	return nil
}

// Recorder is the node's recording manager.
func (s *Server) Recorder() *recorder.Manager { return s.recorder }

// recordingEvent forwards recording events to the webhooks; never blocks.
func (s *Server) recordingEvent(e recorder.Event) {
	if s.ext.webhooks == nil {
		return
	}
	s.ext.webhooks.Emit(webhook.Event{
		Event: e.Type, CreatedAt: e.Time.UnixMilli(), Room: webhook.Room{Name: e.Room},
		Recording: &webhook.Recording{
			ID: e.RecordingID, TrackID: e.TrackID, Dir: e.Dir, Manifest: e.Manifest, Files: e.Files, Error: e.Error,
		},
	})
}

// requireRecordGrant guards the recording routes: with API keys, a bearer
// token with the record or admin grant (for this room, if it names one);
// without keys, loopback clients only, like the rest of the admin API.
func (s *Server) requireRecordGrant(next http.Handler) http.Handler {
	sameSite := signaling.OriginChecker(s.cfg.HTTP.AllowedOrigins) // as the admin API (admin.Options.CheckOrigin)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !sameSite(r) {
			writeAPIError(w, protocol.Errorf(protocol.CodeForbidden,
				"requests from the web page of %s are not allowed (http.allowed_origins)", r.Header.Get("Origin")))
			return
		}
		if !s.auth.Enabled() {
			if !loopback.Client(r.RemoteAddr) {
				writeAPIError(w, protocol.Errorf(protocol.CodeForbidden,
					"recordings are only controlled from loopback clients while the server has no API keys"))
				return
			}
			next.ServeHTTP(w, r)
			return
		}
		scheme, tok, _ := strings.Cut(r.Header.Get("Authorization"), " ")
		if !strings.EqualFold(scheme, "Bearer") || tok == "" {
			w.Header().Set("WWW-Authenticate", `Bearer realm="starling"`)
			writeAPIError(w, protocol.Errorf(protocol.CodeUnauthorized, `token required: send "Authorization: Bearer <token with the record grant>"`))
			return
		}
		claims, perr := s.auth.Verify(tok)
		if perr != nil {
			writeAPIError(w, perr)
			return
		}
		if !claims.Grants.Record && !claims.Grants.Admin {
			writeAPIError(w, protocol.Errorf(protocol.CodeForbidden, "the token has neither the record nor the admin grant"))
			return
		}
		if room := r.PathValue("room"); claims.Grants.Room != "" && claims.Grants.Room != room {
			writeAPIError(w, protocol.Errorf(protocol.CodeForbidden, "the token is for room %q, not %q", claims.Grants.Room, room))
			return
		}
		next.ServeHTTP(w, r)
	})
}

// writeAPIError writes an error the way the admin API does: JSON with the
// protocol code, and the matching HTTP status.
func writeAPIError(w http.ResponseWriter, e *protocol.Error) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(admin.HTTPStatus(e.Code))
	_ = json.NewEncoder(w).Encode(e)
}
