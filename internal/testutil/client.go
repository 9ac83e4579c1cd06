package testutil

import (
	"context"
	"encoding/json"
	"log/slog"
	"net"
	"os"
	"testing"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/webrtc/v4"
	"github.com/starling-rtc/starling/client"
	"github.com/starling-rtc/starling/protocol"
)

// Join connects a Go client over loopback to the signaling URL url, in
// room as name, within timeout; the client closes when the test ends.
// With STARLING_TEST_LOG set the client's own warnings (an offer it could
// not answer, ...) go to stderr.
func Join(t testing.TB, url, room, name string, timeout time.Duration, opts ...func(*client.Options)) *client.Client {
	t.Helper()
	api, err := client.LoopbackAPI()
	if err != nil {
		t.Fatal(err)
	}
	o := client.Options{Name: name, API: api}
	if os.Getenv("STARLING_TEST_LOG") != "" {
		o.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})).With("client", name)
	}
	for _, f := range opts {
		f(&o)
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	c, err := client.Dial(ctx, url, room, o)
	if err != nil {
		t.Fatalf("%s joins %s: %v", name, room, err)
	}
	Cleanup(t, c.Close)
	return c
}

// HasParam matches an event whose params hold the string value at key
// (for client.WaitEvent).
func HasParam(key, value string) func(json.RawMessage) bool {
	return func(raw json.RawMessage) bool {
		var m map[string]any
		if json.Unmarshal(raw, &m) != nil {
			return false
		}
		v, _ := m[key].(string)
		return v == value
	}
}

// Eventually polls cond every 50 ms until it holds, failing the test
// after d with what was awaited.
func Eventually(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	if !Poll(d, cond) {
		t.Fatalf("after %s: %s", d, what)
	}
}

// Poll checks cond every 50 ms until it holds (true) or d has passed
// (false): Eventually for a test that says on its own what was missing.
func Poll(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(50 * time.Millisecond)
	}
	return true
}

// PlainAPI is a stock pion API (default codecs and interceptors, no
// Starling code) on loopback UDP: the peer of a test that plays a
// third-party client. first are interceptors nearest the network (a
// test's loss or throttle); tune, if not nil, changes the setting engine
// last (a socket filter, a network of the test's).
func PlainAPI(t testing.TB, first []interceptor.Factory, tune func(*webrtc.SettingEngine)) *webrtc.API {
	t.Helper()
	m := &webrtc.MediaEngine{}
	if err := m.RegisterDefaultCodecs(); err != nil {
		t.Fatal(err)
	}
	ir := &interceptor.Registry{}
	for _, f := range first {
		ir.Add(f)
	}
	if err := webrtc.RegisterDefaultInterceptors(m, ir); err != nil {
		t.Fatal(err)
	}
	se := webrtc.SettingEngine{}
	se.SetIncludeLoopbackCandidate(true)
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	se.SetIPFilter(func(ip net.IP) bool { return ip.IsLoopback() })
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	// Checks a candidate pair for seconds, as browsers do: with pion's
	// 1.6 s, an offering peer whose first checks went unanswered on a busy
	// machine gave its only pair up and never connected (client.ICECheckRetries).
	se.SetICEMaxBindingRequests(client.ICECheckRetries)
	if tune != nil {
		tune(&se)
	}
	return webrtc.NewAPI(webrtc.WithMediaEngine(m), webrtc.WithInterceptorRegistry(ir), webrtc.WithSettingEngine(se))
}

// LeaveReason waits up to 10 s for c to be sent `leave` and returns its
// reason; when none comes it fails the test (who names c).
func LeaveReason(t testing.TB, c *client.Client, who string) string {
	t.Helper()
	ev, err := c.WaitEvent(Ctx(t, 10*time.Second), protocol.MethodLeave, nil)
	if err != nil {
		t.Fatalf("%s got no leave: %v", who, err)
	}
	var leave protocol.LeaveParams
	_ = json.Unmarshal(ev.Params, &leave)
	return leave.Reason
}
