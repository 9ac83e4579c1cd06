package testutil

import (
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/starling-rtc/starling/client"
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
	t.Cleanup(c.Close)
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
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %s: %s", d, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
