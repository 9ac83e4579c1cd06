package browsertest

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// nodeDir holds the npm project (package.json, package-lock.json) of the
// Firefox driver; `npm ci` there installs puppeteer-core into node_modules.
const nodeDir = "../testdata/node"

// firefoxResult is what firefox_call.mjs prints.
type firefoxResult struct {
	OK        bool   `json:"ok"`
	Error     string `json:"error"`
	UserAgent string `json:"userAgent"`
	Steps     []struct {
		Name    string `json:"name"`
		MS      int    `json:"ms"`
		Version string `json:"version"`
	} `json:"steps"`
	IDA      string  `json:"idA"`
	IDB      string  `json:"idB"`
	TileAOfB tile    `json:"tileAOfB"`
	TileBOfA tile    `json:"tileBOfA"`
	StatsA   inbound `json:"statsA"`
	StatsB   inbound `json:"statsB"`
	LeaveMS  int     `json:"leaveMs"`
	TotalMS  int     `json:"totalMs"`
	Logs     []string
	DiagA    json.RawMessage `json:"diagA"`
	DiagB    json.RawMessage `json:"diagB"`
}

// findFirefox returns the paths of Firefox and node, once puppeteer-core
// is installed in web/testdata/node; without any of them the test is
// skipped outside CI and fails in it.
func findFirefox(t *testing.T) (firefox, node string) {
	t.Helper()
	firefox = findBrowser(t, "STARLING_FIREFOX", "firefox-esr", "firefox-esr", "firefox")
	node = findBrowser(t, "STARLING_NODE", "nodejs", "node")
	if _, err := os.Stat(filepath.Join(nodeDir, "node_modules", "puppeteer-core", "package.json")); err != nil {
		msg := "puppeteer-core is not installed: run `npm ci` in web/testdata/node"
		if inCI() {
			t.Fatalf("%s (CI=%s)", msg, os.Getenv("CI"))
		}
		t.Skip(msg + "; skipping the Firefox test (with CI=true this fails)")
	}
	return firefox, node
}

// TestFirefoxTwoPageCall is TestTwoPageCall in Debian's firefox-esr, driven
// over WebDriver BiDi by puppeteer-core (node ../testdata/node/firefox_call.mjs):
// each page shows the other's named tile, decodes video and receives audio,
// a screenshot is saved, and B drops A's tile within 2 s of A leaving.
// Needs firefox-esr, node and `npm ci` in web/testdata/node; skips without
// them outside CI, fails without them in CI.
func TestFirefoxTwoPageCall(t *testing.T) {
	inPageLane(t)
	firefox, node := findFirefox(t)
	srv := startServer(t)
	shot := filepath.Join(artifactDir(t), "two-party-call-firefox.png")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "firefox_call.mjs", "http://"+srv.Addr(), "browser-firefox", shot)
	cmd.Dir = nodeDir
	cmd.Env = append(os.Environ(), "STARLING_FIREFOX="+firefox)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	start := time.Now()
	out, err := cmd.Output()
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	var r firefoxResult
	if jerr := json.Unmarshal([]byte(lines[len(lines)-1]), &r); jerr != nil {
		t.Fatalf("firefox_call.mjs: %v (exit: %v)\nstdout:\n%s\nstderr:\n%s", jerr, err, out, tail(stderr.String(), 4000))
	}
	t.Logf("firefox run took %v: %s", time.Since(start).Round(time.Millisecond), r.UserAgent)
	for _, s := range r.Steps {
		t.Logf("  %-10s at %5d ms %s", s.Name, s.MS, s.Version)
	}
	if !r.OK {
		t.Fatalf("Firefox call failed: %s\npage logs:\n  %s\npage A connections: %s\npage B connections: %s\nstderr:\n%s",
			r.Error, strings.Join(r.Logs, "\n  "), r.DiagA, r.DiagB, tail(stderr.String(), 3000))
	}
	if r.TileAOfB.Name != "Bob" || r.TileBOfA.Name != "Alice" {
		t.Errorf("tiles: A shows %+v, B shows %+v", r.TileAOfB, r.TileBOfA)
	}
	for name, s := range map[string]inbound{"A": r.StatsA, "B": r.StatsB} {
		if s.FramesDecoded <= 0 || s.AudioPackets <= 0 {
			t.Errorf("page %s inbound: %+v, want video frames decoded and audio packets", name, s)
		}
		t.Logf("page %s inbound: %+v", name, s)
	}
	if r.LeaveMS > 2000 {
		t.Errorf("B dropped A's tile %d ms after A clicked Leave, want ≤ 2000", r.LeaveMS)
	}
	t.Logf("B dropped A's tile %d ms after A left; screenshot %s", r.LeaveMS, shot)
}
