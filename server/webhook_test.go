package server_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/starling-rtc/starling/auth"
	"github.com/starling-rtc/starling/config"
	"github.com/starling-rtc/starling/protocol"
	"github.com/starling-rtc/starling/webhook"
)

// hookReceiver is a local webhook endpoint that fails its first request
// with 500 and records the rest, checking every signature.
type hookReceiver struct {
	mu     sync.Mutex
	events []webhook.Event
	first  bool
	bad    int
}

func (h *hookReceiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	h.mu.Lock()
	defer h.mu.Unlock()
	if !webhook.Verify(testAPISecret, body, r.Header.Get(webhook.HeaderSignature)) || r.Header.Get(webhook.HeaderKey) != testAPIKey {
		h.bad++
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	if !h.first {
		h.first = true
		w.WriteHeader(http.StatusInternalServerError)
		return
	}
	var e webhook.Event
	_ = json.Unmarshal(body, &e)
	h.events = append(h.events, e)
}

func (h *hookReceiver) names() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []string
	for _, e := range h.events {
		out = append(out, e.Event)
	}
	return out
}

// TestWebhooks: a room's life reaches a local receiver as signed events, in
// order, the first one after a retry.
func TestWebhooks(t *testing.T) {
	parallel(t)
	recv := &hookReceiver{}
	hs := httptest.NewServer(recv)
	defer hs.Close()
	srv := startServer(t, func(c *config.Config) {
		withKeys(c)
		c.Webhook.URLs = []string{hs.URL + "/hooks"}
	})
	const room = "hooked"
	pub := join(t, srv, room, "Pat", withToken(token(t, "pat", auth.Grants{Room: room}, time.Hour)))
	media := publishFake(t, pub)
	waitFor(t, 10*time.Second, "track_published events", func() bool {
		return strings.Count(strings.Join(recv.names(), " "), webhook.TrackPublished) == 2
	})
	media.Stop()
	if err := pub.Leave(ctxT(t, 5*time.Second)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "room_finished", func() bool {
		n := recv.names()
		return len(n) > 0 && n[len(n)-1] == webhook.RoomFinished
	})
	got := strings.Join(recv.names(), " ")
	want := "room_started participant_joined track_published track_published track_unpublished track_unpublished participant_left room_finished"
	if got != want {
		t.Fatalf("events:\n got  %s\n want %s", got, want)
	}
	recv.mu.Lock()
	defer recv.mu.Unlock()
	if recv.bad != 0 {
		t.Fatalf("%d requests with a bad signature", recv.bad)
	}
	joined, left := recv.events[1], recv.events[6]
	if joined.Participant == nil || joined.Participant.Identity != "pat" || joined.Participant.Name != "Pat" ||
		joined.Room.Name != room || joined.Room.SID == "" || joined.ID == "" {
		t.Fatalf("participant_joined = %+v", joined)
	}
	if left.Reason != protocol.ReasonClientLeave {
		t.Fatalf("participant_left reason %q", left.Reason)
	}
	if tr := recv.events[2].Track; tr == nil || tr.ID == "" || tr.ParticipantID != pub.ParticipantID() {
		t.Fatalf("track_published track = %+v", tr)
	}
}

// TestOriginCheck: browsers from other origins cannot open the signaling
// socket unless allowed; the server's own page and native clients can.
func TestOriginCheck(t *testing.T) {
	parallel(t)
	srv := startServer(t, func(c *config.Config) { c.HTTP.AllowedOrigins = []string{"https://app.example.com"} })
	dial := func(origin string) int {
		h := http.Header{}
		if origin != "" {
			h.Set("Origin", origin)
		}
		ws, resp, err := websocket.DefaultDialer.Dial(srv.SignalingURL(), h)
		if err == nil {
			ws.Close()
			return http.StatusSwitchingProtocols
		}
		if resp == nil {
			t.Fatalf("dial with origin %q: %v", origin, err)
		}
		return resp.StatusCode
	}
	for origin, want := range map[string]int{
		"":                         101,
		"http://" + srv.Addr():     101,
		"https://app.example.com":  101,
		"https://evil.example.com": 403,
		"http://app.example.com":   403,
	} {
		if got := dial(origin); got != want {
			t.Errorf("origin %q: status %d, want %d", origin, got, want)
		}
	}
}

// writeSelfSigned writes a certificate for 127.0.0.1 and its key.
func writeSelfSigned(t *testing.T) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "starling test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:    x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}

// TestTLS: with a certificate the port speaks HTTPS and WSS.
func TestTLS(t *testing.T) {
	parallel(t)
	certFile, keyFile, pool := writeSelfSigned(t)
	srv := startServer(t, func(c *config.Config) { c.HTTP.TLSCert, c.HTTP.TLSKey = certFile, keyFile })
	if !strings.HasPrefix(srv.SignalingURL(), "wss://") || !strings.HasPrefix(srv.BaseURL(), "https://") {
		t.Fatalf("URLs %s %s", srv.SignalingURL(), srv.BaseURL())
	}
	tlsCfg := &tls.Config{RootCAs: pool}
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: tlsCfg}}
	defer hc.CloseIdleConnections()
	resp, err := hc.Get(srv.BaseURL() + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.TLS == nil {
		t.Fatalf("https /healthz: %d, tls %v", resp.StatusCode, resp.TLS != nil)
	}
	d := websocket.Dialer{TLSClientConfig: tlsCfg, HandshakeTimeout: 5 * time.Second}
	ws, _, err := d.Dial(srv.SignalingURL(), nil)
	if err != nil {
		t.Fatalf("wss dial: %v", err)
	}
	defer ws.Close()
	if err := ws.WriteJSON(map[string]any{"jsonrpc": "2.0", "id": 1, "method": "ping"}); err != nil {
		t.Fatal(err)
	}
	var m protocol.Message
	_ = ws.SetReadDeadline(time.Now().Add(5 * time.Second))
	if err := ws.ReadJSON(&m); err != nil || m.Error != nil {
		t.Fatalf("ping over wss: %v %+v", err, m.Error)
	}
	// Plain HTTP on the TLS port does not work.
	plain := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	if resp, err := plain.Get("http://" + srv.Addr() + "/healthz"); err == nil {
		resp.Body.Close()
		if resp.StatusCode == 200 {
			t.Fatal("plain HTTP answered on the TLS port")
		}
	}
}
