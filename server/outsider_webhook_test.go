package server_test

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/starling-rtc/starling/auth"
	"github.com/starling-rtc/starling/config"
)

// rawHooks is a webhook endpoint written from docs/webhooks.md alone: it
// checks the signature as the document's Python does (HMAC-SHA256 of the
// raw body, "sha256=" + hex), reads the body as a JSON map, and fails the
// first delivery of every event once, so each is retried.
type rawHooks struct {
	mu       sync.Mutex
	problems []string
	failed   map[string]bool           // delivery ids already failed once
	bodies   map[string]map[string]any // delivery id -> body, accepted
	order    []string                  // event names, as accepted
	retried  map[string]bool           // delivery ids seen again after a failure
}

func (h *rawHooks) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	h.mu.Lock()
	defer h.mu.Unlock()
	mac := hmac.New(sha256.New, []byte(testAPISecret))
	mac.Write(body)
	want := "sha256=" + hex.EncodeToString(mac.Sum(nil))
	if !hmac.Equal([]byte(want), []byte(r.Header.Get("X-Starling-Signature"))) {
		h.problems = append(h.problems, fmt.Sprintf("signature %q, want %q", r.Header.Get("X-Starling-Signature"), want))
	}
	for k, v := range map[string]string{"Content-Type": "application/json", "X-Starling-Key": testAPIKey} {
		if got := r.Header.Get(k); !strings.HasPrefix(got, v) {
			h.problems = append(h.problems, fmt.Sprintf("%s %q, want %q", k, got, v))
		}
	}
	var m map[string]any
	if err := json.Unmarshal(body, &m); err != nil {
		h.problems = append(h.problems, fmt.Sprintf("body %q: %v", body, err))
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	delivery := r.Header.Get("X-Starling-Delivery")
	if delivery == "" || delivery != m["id"] {
		h.problems = append(h.problems, fmt.Sprintf("X-Starling-Delivery %q, body id %v: want the same", delivery, m["id"]))
	}
	if ev := r.Header.Get("X-Starling-Event"); ev != m["event"] {
		h.problems = append(h.problems, fmt.Sprintf("X-Starling-Event %q, body event %v", ev, m["event"]))
	}
	if !h.failed[delivery] {
		h.failed[delivery] = true
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	h.retried[delivery] = true
	h.bodies[delivery] = m
	h.order = append(h.order, fmt.Sprint(m["event"]))
	w.WriteHeader(http.StatusNoContent)
}

func (h *rawHooks) events() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.order...)
}

// TestOutsiderWebhooksAsDocumented: docs/webhooks.md's headers, signature
// and body fields, checked by a receiver that uses none of the server's
// code (the other webhook tests verify with webhook.Verify and decode into
// webhook.Event, the server's own types): every event signed as the
// document's Python checks it, retried under the same delivery id after a
// failure, with the body's fields as the document's example names them.
func TestOutsiderWebhooksAsDocumented(t *testing.T) {
	parallel(t)
	recv := &rawHooks{failed: map[string]bool{}, bodies: map[string]map[string]any{}, retried: map[string]bool{}}
	hs := httptest.NewServer(recv)
	defer hs.Close()
	srv := startServer(t, func(c *config.Config) {
		withKeys(c)
		c.Webhook.URLs = []string{hs.URL + "/hooks"}
	})
	const room = "hooks-raw"
	o := outsiderDial(t, srv.SignalingURL())
	res, e := o.call(1, "join", map[string]any{"room": room, "name": "Alice",
		"token": token(t, "alice", auth.Grants{Room: room}, time.Minute)})
	if e != nil {
		t.Fatalf("join: %v", e)
	}
	me, _ := res["participant"].(map[string]any)
	if _, e := o.call(2, "leave", map[string]any{}); e != nil {
		t.Fatalf("leave: %v", e)
	}
	waitFor(t, 20*time.Second, "room_finished", func() bool {
		ev := recv.events()
		return len(ev) > 0 && ev[len(ev)-1] == "room_finished"
	})
	recv.mu.Lock()
	defer recv.mu.Unlock()
	for _, p := range recv.problems {
		t.Error(p)
	}
	if got := strings.Join(recv.order, " "); got != "room_started participant_joined participant_left room_finished" {
		t.Errorf("events %s", got)
	}
	for id, m := range recv.bodies {
		if !strings.HasPrefix(id, "EV_") {
			t.Errorf("delivery id %q, the document's look like EV_...", id)
		}
		if ms, ok := m["createdAt"].(float64); !ok || time.Since(time.UnixMilli(int64(ms))) > time.Minute || time.Since(time.UnixMilli(int64(ms))) < -time.Minute {
			t.Errorf("%v: createdAt %v, want Unix milliseconds of now", m["event"], m["createdAt"])
		}
		r, _ := m["room"].(map[string]any)
		if r["name"] != room || !strings.HasPrefix(fmt.Sprint(r["sid"]), "RM_") {
			t.Errorf("%v: room %v", m["event"], m["room"])
		}
		switch m["event"] {
		case "participant_joined", "participant_left":
			p, _ := m["participant"].(map[string]any)
			if p["id"] != me["id"] || p["identity"] != "alice" || p["name"] != "Alice" {
				t.Errorf("%v: participant %v, want id %v, identity alice, name Alice", m["event"], p, me["id"])
			}
			if m["event"] == "participant_left" && m["reason"] != "clientLeave" {
				t.Errorf("participant_left reason %v, want clientLeave", m["reason"])
			}
		}
	}
}
