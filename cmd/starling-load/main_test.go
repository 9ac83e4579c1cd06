package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/starling-rtc/starling/bench/loadgen"
	"github.com/starling-rtc/starling/config"
	"github.com/starling-rtc/starling/server"
)

// startServer runs a node in this process on free loopback ports.
func startServer(t *testing.T) *server.Server {
	t.Helper()
	cfg := config.Default()
	cfg.HTTP.Address = "127.0.0.1:0"
	cfg.RTC.BindIP = "127.0.0.1"
	cfg.RTC.UDPPort = 0
	cfg.RTC.TCPPort = -1
	cfg.Room.EmptyTimeout = config.Duration(100 * time.Millisecond)
	srv, err := server.New(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	srv.Serve()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	})
	return srv
}

// TestLoadSmoke runs the command against an in-process server: 1 publisher,
// 2 subscribers, 3 s; every packet sent reaches both subscribers.
func TestLoadSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("sends real media for a few seconds")
	}
	srv := startServer(t)
	jsonPath := filepath.Join(t.TempDir(), "summary.json")
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), []string{
		"--url", srv.SignalingURL(), "--preset", "webinar", "--subscribers", "2",
		"--duration", "3s", "--warmup", "1s", "--video-bitrate", "1M", "--fps", "30",
		"--server-pid", strconv.Itoa(os.Getpid()), // the server runs in this process
		"--json", jsonPath,
	}, &stdout, &stderr)
	if code != 0 {
		t.Fatalf("exit code %d\nstdout:\n%s\nstderr:\n%s", code, stdout.String(), stderr.String())
	}
	t.Logf("\n%s", stdout.String())
	for _, want := range []string{"subscribers", "packet loss", "forwarding delay", "join time", "server (pid"} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("summary table lacks %q", want)
		}
	}
	if !strings.Contains(stderr.String(), "measuring") {
		t.Errorf("no progress lines on stderr:\n%s", stderr.String())
	}
	raw, err := os.ReadFile(jsonPath)
	if err != nil {
		t.Fatal(err)
	}
	var s loadgen.Summary
	if err := json.Unmarshal(raw, &s); err != nil {
		t.Fatal(err)
	}
	if s.Publishers != 1 || s.Subscribers != 2 || s.JoinFailures != 0 {
		t.Fatalf("counts: %d publishers, %d subscribers, %d failures", s.Publishers, s.Subscribers, s.JoinFailures)
	}
	if s.StreamsExpected != 4 || s.StreamsStarted != 4 {
		t.Fatalf("streams %d of %d started, want 4 of 4", s.StreamsStarted, s.StreamsExpected)
	}
	if s.Received.Packets == 0 || s.Sent.Packets == 0 {
		t.Fatalf("sent %d, received %d packets", s.Sent.Packets, s.Received.Packets)
	}
	if s.Loss.Percent >= 5 {
		t.Fatalf("loss %.2f%%", s.Loss.Percent)
	}
	// Received ≈ sent × subscribers: a few packets are in flight at each
	// end of the window.
	if r := s.Received.DeliveryRatio; r < 0.95 || r > 1.05 {
		t.Fatalf("received %d media packets for %d sent × subscribers (ratio %.3f)", s.Received.MediaPackets, s.Received.ExpectedFromSent, r)
	}
	if want := 2 * s.Sent.Packets; s.Received.ExpectedFromSent < want*95/100 || s.Received.ExpectedFromSent > want*105/100 {
		t.Fatalf("expected-from-sent %d, want about 2 × %d", s.Received.ExpectedFromSent, s.Sent.Packets)
	}
	if s.DelayMs.Samples == 0 || s.DelayMs.P50 <= 0 || s.DelayMs.P50 > s.DelayMs.P99 {
		t.Fatalf("delay %+v", s.DelayMs)
	}
	if s.Server == nil || s.Server.CPUSeconds <= 0 || s.Server.RSSMB <= 0 || s.Generator == nil {
		t.Fatalf("process stats: server %+v, generator %+v", s.Server, s.Generator)
	}
	if mean := s.SubscriberBitrate.Mean; mean < 0.8e6 || mean > 1.4e6 {
		t.Fatalf("per-subscriber bit rate %.0f, want about 1M video + 48k audio", mean)
	}
}

func TestFlagErrors(t *testing.T) {
	for _, args := range [][]string{
		{"--preset", "concert"},
		{"--video-bitrate", "fast"},
		{"--url", "ws://example.com/v1/rtc"},
		{"--size", "big"},
		{"--start-server", "--server-pid", "1"},
		{"extra"},
	} {
		code := run(context.Background(), args, io.Discard, io.Discard)
		if code == 0 {
			t.Errorf("%v: exit code 0", args)
		}
	}
	var out bytes.Buffer
	if code := run(context.Background(), []string{"--help"}, io.Discard, &out); code != 0 || !strings.Contains(out.String(), "--subscribers") && !strings.Contains(out.String(), "-subscribers") {
		t.Errorf("--help: code %d, output %q", code, out.String())
	}
	if code := run(context.Background(), []string{"--start-server"}, io.Discard, io.Discard); code != 1 {
		t.Errorf("--start-server without --server-bin: code %d, want 1", code)
	}
}

func TestLoopbackURL(t *testing.T) {
	for u, want := range map[string]bool{
		"ws://127.0.0.1:7900/v1/rtc": true, "ws://localhost:7900/v1/rtc": true, "ws://[::1]:7900/v1/rtc": true,
		"wss://127.0.0.2/v1/rtc": true, "ws://10.0.0.1:7900/v1/rtc": false, "ws://example.com/v1/rtc": false,
		"http://127.0.0.1:7900/": false, "ws://127.0.0.1.evil.com/v1/rtc": false, "ws://[::2]:7900/": false,
	} {
		if got := loopbackURL(u); got != want {
			t.Errorf("loopbackURL(%q) = %v", u, got)
		}
	}
}
