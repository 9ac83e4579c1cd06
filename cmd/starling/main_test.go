package main_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/starling-rtc/starling/client"
	"github.com/starling-rtc/starling/internal/testutil"
	"github.com/starling-rtc/starling/protocol"
)

// TestBinary builds the real starling binary once and runs it as an
// operator would: --help, a bad flag, and a node that is joined and then
// stopped with SIGTERM.
func TestBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	parallelUnlessRace(t)
	bin := buildStarling(t)

	t.Run("help exits 0 and lists --config", func(t *testing.T) {
		out, code := runStarling(t, bin, "--help")
		if code != 0 {
			t.Fatalf("--help exited %d, want 0:\n%s", code, out)
		}
		for _, want := range []string{"--config", "--bind", "--udp-port"} {
			if !strings.Contains(out, want) {
				t.Errorf("--help does not list %s:\n%s", want, out)
			}
		}
	})

	t.Run("bad flag exits 2 with a clear message", func(t *testing.T) {
		out, code := runStarling(t, bin, "--no-such-flag")
		if code != 2 {
			t.Fatalf("a bad flag exited %d, want 2:\n%s", code, out)
		}
		if !strings.Contains(out, "flag provided but not defined: -no-such-flag") {
			t.Fatalf("the message does not name the bad flag:\n%s", out)
		}
	})

	t.Run("bad flag value exits 2 naming the flag", func(t *testing.T) {
		out, code := runStarling(t, bin, "--udp-port", "lots")
		if code != 2 {
			t.Fatalf("a bad flag value exited %d, want 2:\n%s", code, out)
		}
		if !strings.Contains(out, "udp-port") || !strings.Contains(out, "lots") {
			t.Fatalf("the message does not name the flag and its value:\n%s", out)
		}
	})

	t.Run("SIGTERM sends leave and exits 0", func(t *testing.T) {
		n := startNode(t, bin, "starling", cleanEnv(), 0,
			"--bind", "127.0.0.1:0", "--udp-port", "0", "--tcp-port", "0", "--media-bind-ip", "127.0.0.1",
			"--log-format", "json", "--log-level", "debug")

		addr := n.log.listenAddr(t, 20*time.Second)
		waitHealthy(t, "http://"+addr+"/healthz", 10*time.Second)

		api, err := client.LoopbackAPI()
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		c, err := client.Dial(ctx, "ws://"+addr+"/v1/rtc", "bin-room", client.Options{Name: "cli", API: api})
		if err != nil {
			t.Fatalf("join: %v", err)
		}
		defer c.Close()
		if err := c.Call(ctx, protocol.MethodPing, protocol.Empty{}, nil); err != nil {
			t.Fatalf("ping: %v", err)
		}

		start := time.Now()
		if err := n.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		leaveCtx, cancelLeave := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancelLeave()
		if _, err := c.WaitEvent(leaveCtx, protocol.MethodLeave, func(raw json.RawMessage) bool {
			var p protocol.LeaveParams
			return json.Unmarshal(raw, &p) == nil && p.Reason == protocol.ReasonServerShutdown
		}); err != nil {
			t.Fatalf("no leave {reason: %q} after SIGTERM: %v", protocol.ReasonServerShutdown, err)
		}
		select {
		case <-c.Done():
		case <-time.After(10 * time.Second):
			t.Fatal("the signaling socket stayed open after leave")
		}
		select {
		case <-n.exited:
			if n.err != nil {
				t.Fatalf("starling exited with %v after SIGTERM, want 0", n.err)
			}
			t.Logf("exited 0 %v after SIGTERM", time.Since(start).Round(time.Millisecond))
		case <-time.After(10*time.Second - time.Since(start)):
			t.Fatal("starling did not exit within 10 s of SIGTERM")
		}
	})
}

// starlingBinary is the binary buildStarling finds once for the whole
// test process: the build cache's (testutil.StarlingBinary), linked again
// only when the source changed. dir stays empty: TestMain removes nothing.
var starlingBinary struct {
	once      sync.Once
	dir, path string
	err       error
}

// buildStarling builds the starling binary (if the build cache does not
// hold it yet; once per test process) and returns its path.
func buildStarling(t *testing.T) string {
	t.Helper()
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skipf("no go tool to build the binary: %v", err)
	}
	b := &starlingBinary
	b.once.Do(func() { b.path, b.err = testutil.StarlingBinary(goTool, ".") })
	if b.err != nil {
		t.Fatal(b.err)
	}
	return b.path
}

// removeStarlingBinary removes what buildStarling built, if anything.
func removeStarlingBinary() {
	if starlingBinary.dir != "" {
		_ = os.RemoveAll(starlingBinary.dir)
	}
}

// runStarling runs the binary to completion and returns its combined output
// and exit code.
func runStarling(t *testing.T, bin string, args ...string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = cleanEnv()
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return out.String(), 0
	case errors.As(err, &exit) && exit.Exited():
		return out.String(), exit.ExitCode()
	}
	t.Fatalf("running starling %v: %v\n%s", args, err, out.String())
	return "", -1
}

// cleanEnv is the test's environment without STARLING_* variables, so a
// developer's config or keys cannot change what the binary does.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "STARLING_") {
			env = append(env, kv)
		}
	}
	return env
}

func waitHealthy(t *testing.T, url string, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not healthy after %v: %v", url, d, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// lineLog collects the binary's stderr (JSON log lines).
type lineLog struct {
	mu   sync.Mutex
	cond *sync.Cond
	buf  bytes.Buffer
}

func (l *lineLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf.Write(p)
	l.cond.Broadcast()
	return len(p), nil
}

func (l *lineLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// addr is the HTTP address logged so far, or "".
func (l *lineLog) addr() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.addrLocked()
}

func (l *lineLog) addrLocked() string {
	for _, line := range strings.Split(l.buf.String(), "\n") {
		var rec map[string]any
		if json.Unmarshal([]byte(line), &rec) != nil {
			continue
		}
		if u, ok := rec["http"].(string); ok && strings.HasPrefix(u, "http://") {
			return strings.TrimPrefix(u, "http://")
		}
	}
	return ""
}

// listenAddr waits for the log record that reports the HTTP address
// ("http": "http://host:port"), which is how a --bind with port 0 tells
// where it listens.
func (l *lineLog) listenAddr(t *testing.T, d time.Duration) string {
	t.Helper()
	stop := time.AfterFunc(d, func() { l.mu.Lock(); l.cond.Broadcast(); l.mu.Unlock() })
	defer stop.Stop()
	deadline := time.Now().Add(d)
	l.mu.Lock()
	defer l.mu.Unlock()
	for {
		if a := l.addrLocked(); a != "" {
			return a
		}
		if time.Now().After(deadline) {
			t.Fatalf("starling never logged its HTTP address within %v:\n%s", d, l.buf.String())
		}
		l.cond.Wait()
	}
}
