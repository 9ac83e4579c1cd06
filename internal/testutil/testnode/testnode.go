// Package testnode starts in-process Starling nodes on loopback for the
// tests of the packages that assemble a node (server's own tests, the
// cluster's, the browser tests). It is apart from testutil, which imports
// no server, so that any package's tests may use testutil.
package testnode

import (
	"io"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/starling-rtc/starling/config"
	"github.com/starling-rtc/starling/internal/testutil"
	"github.com/starling-rtc/starling/server"
)

// Config is the default configuration on loopback: HTTP, media UDP and
// ICE-TCP on free ports of 127.0.0.1.
func Config() config.Config {
	cfg := config.Default()
	cfg.HTTP.Address = "127.0.0.1:0"
	cfg.RTC.BindIP = "127.0.0.1"
	cfg.RTC.UDPPort = 0
	cfg.RTC.TCPPort = 0
	return cfg
}

// Logger is a test node's logger: silent at level info, unless
// STARLING_TEST_LOG asks for the logs (then to stderr at debug). Info
// unless asked: at debug level pion formats fields it writes concurrently
// (a TrackRemote in onTrack while its RTX SSRC is being set), which the
// race detector reports (a race inside pion, not in Starling).
func Logger() *slog.Logger {
	var w io.Writer = io.Discard
	level := slog.LevelInfo
	if os.Getenv("STARLING_TEST_LOG") != "" {
		w, level = os.Stderr, slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level}))
}

// Start runs a node with cfg until the test ends. A shutdown that
// outlasted its 10 s now and then under load could not be explained after
// the fact: a slow one leaves the goroutines' stacks (testutil.ShutdownWithin).
func Start(t testing.TB, cfg config.Config) *server.Server {
	t.Helper()
	srv, err := server.New(cfg, Logger())
	if err != nil {
		t.Fatalf("server.New: %v", err)
	}
	srv.Serve()
	testutil.Cleanup(t, func() {
		if err := testutil.ShutdownWithin(t, srv.Shutdown, 10*time.Second); err != nil {
			t.Errorf("server shutdown: %v", err)
		}
	})
	return srv
}
