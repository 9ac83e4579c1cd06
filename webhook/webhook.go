// Package webhook delivers room events to HTTP endpoints: a JSON POST per
// event, signed with HMAC-SHA256 by an API secret. Delivery never blocks the
// caller: events go to a bounded queue per endpoint (dropped and counted
// when it is full), and one goroutine per endpoint posts them in order,
// retrying failures with exponential backoff.
//
// Headers of each request:
//
//	Content-Type: application/json
//	X-Starling-Event: participant_joined
//	X-Starling-Delivery: EV_... (the event id; the same for every retry)
//	X-Starling-Key: <API key>
//	X-Starling-Signature: sha256=<hex HMAC-SHA256 of the body with the key's secret>
package webhook

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/starling-rtc/starling/protocol"
	"github.com/starling-rtc/starling/room"
)

// Event names.
const (
	RoomStarted      = "room_started"
	RoomFinished     = "room_finished"
	ParticipantJoin  = "participant_joined"
	ParticipantLeave = "participant_left"
	TrackPublished   = "track_published"
	TrackUnpublished = "track_unpublished"
)

// Header names.
const (
	HeaderSignature = "X-Starling-Signature"
	HeaderEvent     = "X-Starling-Event"
	HeaderDelivery  = "X-Starling-Delivery"
	HeaderKey       = "X-Starling-Key"
)

// Event is the JSON body of one webhook request.
type Event struct {
	ID          string          `json:"id"`
	Event       string          `json:"event"`
	CreatedAt   int64           `json:"createdAt"` // Unix milliseconds
	Room        Room            `json:"room"`
	Participant *Participant    `json:"participant,omitempty"`
	Track       *protocol.Track `json:"track,omitempty"`
	Reason      string          `json:"reason,omitempty"` // participant_left: why
	Recording   *Recording      `json:"recording,omitempty"`
}

// Recording describes a recording in recording_started, recording_finished
// and recording_failed events.
type Recording struct {
	ID       string   `json:"id"`
	TrackID  string   `json:"trackId,omitempty"` // a track recording; empty for a whole room
	Dir      string   `json:"dir"`
	Manifest string   `json:"manifest"`
	Files    []string `json:"files,omitempty"`
	Error    string   `json:"error,omitempty"`
}

// Room identifies the room instance of an event.
type Room struct {
	Name string `json:"name"`
	SID  string `json:"sid"`
}

// Participant identifies the participant of an event.
type Participant struct {
	ID       string `json:"id"`
	Identity string `json:"identity"`
	Name     string `json:"name"`
}

// Config configures a Notifier.
type Config struct {
	URLs        []string
	APIKey      string        // sent in X-Starling-Key
	Secret      string        // signs the body
	Timeout     time.Duration // one attempt; default 5s
	QueueSize   int           // per endpoint; default 1024
	MaxAttempts int           // default 5
	Backoff     time.Duration // first retry delay, doubled each retry up to 30s; default 1s
	Client      *http.Client  // default: a client with Timeout
	Logger      *slog.Logger
}

// Notifier sends events to every configured URL. It implements
// room.Observer and room.LifecycleObserver.
type Notifier struct {
	cfg       Config
	log       *slog.Logger
	endpoints []*endpoint
	ctx       context.Context
	cancel    context.CancelFunc
	wg        sync.WaitGroup

	mu     sync.RWMutex
	closed bool

	delivered, failed, dropped, retries atomic.Uint64
}

type endpoint struct {
	url string
	q   chan delivery
}

type delivery struct {
	id, event string
	body      []byte
}

// New starts a Notifier; Close stops it.
func New(cfg Config) *Notifier {
	if cfg.Timeout <= 0 {
		cfg.Timeout = 5 * time.Second
	}
	if cfg.QueueSize <= 0 {
		cfg.QueueSize = 1024
	}
	if cfg.MaxAttempts <= 0 {
		cfg.MaxAttempts = 5
	}
	if cfg.Backoff <= 0 {
		cfg.Backoff = time.Second
	}
	if cfg.Client == nil {
		cfg.Client = &http.Client{Timeout: cfg.Timeout}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	n := &Notifier{cfg: cfg, log: cfg.Logger.With("component", "webhook")}
	n.ctx, n.cancel = context.WithCancel(context.Background())
	for _, u := range cfg.URLs {
		ep := &endpoint{url: u, q: make(chan delivery, cfg.QueueSize)}
		n.endpoints = append(n.endpoints, ep)
		n.wg.Add(1)
		go n.run(ep)
	}
	return n
}

// Sign returns the X-Starling-Signature value of body.
func Sign(secret string, body []byte) string {
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write(body)
	return "sha256=" + hex.EncodeToString(mac.Sum(nil))
}

// Verify checks a request body against its X-Starling-Signature header
// value, in constant time. Receivers written in Go can use it.
func Verify(secret string, body []byte, signature string) bool {
	return hmac.Equal([]byte(Sign(secret, body)), []byte(strings.TrimSpace(signature)))
}

// Emit queues e for every endpoint; it never blocks. It fills in the id and
// time when they are empty.
func (n *Notifier) Emit(e Event) {
	if e.ID == "" {
		e.ID = newID()
	}
	if e.CreatedAt == 0 {
		e.CreatedAt = time.Now().UnixMilli()
	}
	body, err := json.Marshal(e)
	if err != nil {
		n.log.Error("cannot encode event", "event", e.Event, "err", err)
		return
	}
	d := delivery{id: e.ID, event: e.Event, body: body}
	n.mu.RLock()
	defer n.mu.RUnlock()
	if n.closed {
		return
	}
	for _, ep := range n.endpoints {
		select {
		case ep.q <- d:
		default:
			if n.dropped.Add(1)%100 == 1 { // do not flood the log either
				n.log.Warn("webhook queue full: events dropped", "url", ep.url, "dropped_total", n.dropped.Load())
			}
		}
	}
}

// run delivers one endpoint's events in order.
func (n *Notifier) run(ep *endpoint) {
	defer n.wg.Done()
	for d := range ep.q {
		n.deliver(ep, d)
	}
}

// deliver tries d up to MaxAttempts times.
func (n *Notifier) deliver(ep *endpoint, d delivery) {
	wait := n.cfg.Backoff
	for attempt := 1; ; attempt++ {
		retry, err := n.post(ep, d)
		if err == nil {
			n.delivered.Add(1)
			return
		}
		if !retry || attempt >= n.cfg.MaxAttempts || n.ctx.Err() != nil {
			n.failed.Add(1)
			n.log.Warn("webhook not delivered", "url", ep.url, "event", d.event, "id", d.id, "attempts", attempt, "err", err)
			return
		}
		n.retries.Add(1)
		n.log.Debug("webhook failed, retrying", "url", ep.url, "event", d.event, "attempt", attempt, "in", wait, "err", err)
		t := time.NewTimer(jitter(wait))
		select {
		case <-t.C:
		case <-n.ctx.Done():
			t.Stop()
		}
		wait = min(2*wait, 30*time.Second)
	}
}

// post makes one attempt; retry says whether a failure may succeed later.
func (n *Notifier) post(ep *endpoint, d delivery) (retry bool, err error) {
	ctx, cancel := context.WithTimeout(n.ctx, n.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, ep.url, bytes.NewReader(d.body))
	if err != nil {
		return false, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "Starling-Webhook/1")
	req.Header.Set(HeaderEvent, d.event)
	req.Header.Set(HeaderDelivery, d.id)
	req.Header.Set(HeaderKey, n.cfg.APIKey)
	req.Header.Set(HeaderSignature, Sign(n.cfg.Secret, d.body))
	resp, err := n.cfg.Client.Do(req)
	if err != nil {
		return true, err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	switch c := resp.StatusCode; {
	case c >= 200 && c < 300:
		return false, nil
	case c == http.StatusRequestTimeout || c == http.StatusTooManyRequests || c >= 500:
		return true, fmt.Errorf("HTTP %s", resp.Status)
	default: // other 4xx: the receiver refuses it; retrying will not help
		return false, fmt.Errorf("HTTP %s", resp.Status)
	}
}

// Close stops accepting events, delivers what is queued until ctx ends,
// then abandons the rest.
func (n *Notifier) Close(ctx context.Context) error {
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return nil
	}
	n.closed = true
	for _, ep := range n.endpoints {
		close(ep.q)
	}
	n.mu.Unlock()
	done := make(chan struct{})
	go func() { n.wg.Wait(); close(done) }()
	defer n.cfg.Client.CloseIdleConnections()
	select {
	case <-done:
		n.cancel()
		return nil
	case <-ctx.Done():
		n.cancel() // abort attempts and backoffs; what is left is dropped
		<-done
		return errors.New("webhook: shutdown before every event was delivered")
	}
}

// Collectors export delivery counters to Prometheus.
func (n *Notifier) Collectors() []prometheus.Collector {
	c := func(name, help string, v *atomic.Uint64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: "starling", Subsystem: "webhook", Name: name, Help: help},
			func() float64 { return float64(v.Load()) })
	}
	return []prometheus.Collector{
		c("delivered_total", "Webhook requests answered with 2xx.", &n.delivered),
		c("failed_total", "Webhook events given up on after their attempts (or refused with a 4xx).", &n.failed),
		c("dropped_total", "Webhook events dropped because an endpoint's queue was full.", &n.dropped),
		c("retries_total", "Webhook attempts retried after a failure.", &n.retries),
	}
}

// The room observers.

// RoomStarted implements room.LifecycleObserver.
func (n *Notifier) RoomStarted(name, sid string) {
	n.Emit(Event{Event: RoomStarted, Room: Room{Name: name, SID: sid}})
}

// RoomClosed implements room.Observer.
func (n *Notifier) RoomClosed(name, sid string) {
	n.Emit(Event{Event: RoomFinished, Room: Room{Name: name, SID: sid}})
}

// ParticipantJoined implements room.LifecycleObserver.
func (n *Notifier) ParticipantJoined(p room.ParticipantEvent) {
	n.Emit(Event{Event: ParticipantJoin, Room: Room{Name: p.Room, SID: p.RoomSID}, Participant: participant(p)})
}

// ParticipantLeft implements room.LifecycleObserver.
func (n *Notifier) ParticipantLeft(p room.ParticipantEvent, reason string) {
	n.Emit(Event{Event: ParticipantLeave, Room: Room{Name: p.Room, SID: p.RoomSID}, Participant: participant(p), Reason: reason})
}

// TrackPublished implements room.Observer.
// A track handed over to the node its participant moved to keeps its id
// and was announced already (by its old node): not again.
func (n *Notifier) TrackPublished(t room.PublishedTrack) {
	if t.HandedOver {
		return
	}
	n.emitTrack(TrackPublished, t)
}

// TrackUnpublished implements room.Observer.
func (n *Notifier) TrackUnpublished(t room.PublishedTrack) { n.emitTrack(TrackUnpublished, t) }

func (n *Notifier) emitTrack(kind string, t room.PublishedTrack) {
	track := t.Track
	n.Emit(Event{Event: kind, Room: Room{Name: t.Room, SID: t.RoomSID},
		Participant: &Participant{ID: t.ParticipantID, Identity: t.Identity, Name: t.ParticipantName}, Track: &track})
}

func participant(p room.ParticipantEvent) *Participant {
	return &Participant{ID: p.ParticipantID, Identity: p.Identity, Name: p.Name}
}

var (
	_ room.Observer          = (*Notifier)(nil)
	_ room.LifecycleObserver = (*Notifier)(nil)
)

const idAlphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

func newID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	out := []byte("EV_")
	for _, c := range b {
		out = append(out, idAlphabet[int(c)%len(idAlphabet)])
	}
	return string(out)
}

// jitter spreads retries by ±20% so many nodes do not retry in step.
func jitter(d time.Duration) time.Duration {
	n, err := rand.Int(rand.Reader, big.NewInt(int64(d)/5+1))
	if err != nil {
		return d
	}
	return d - d/10 + time.Duration(n.Int64())
}
