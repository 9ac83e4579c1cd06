package browsertest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"github.com/starling-rtc/starling/config"
	"github.com/starling-rtc/starling/internal/testutil"
	"github.com/starling-rtc/starling/internal/testutil/testnode"
	"github.com/starling-rtc/starling/server"
)

// inCI reports whether the environment says the tests run in CI, where a
// missing browser is a failure and not a reason to skip.
func inCI() bool {
	switch strings.ToLower(strings.TrimSpace(os.Getenv("CI"))) {
	case "", "0", "false", "no":
		return false
	}
	return true
}

// findBrowser returns the path of the first of names found in PATH (or the
// path in the environment variable env). When none is found it skips the test,
// or fails it in CI.
func findBrowser(t *testing.T, env, pkg string, names ...string) string {
	t.Helper()
	if p := os.Getenv(env); p != "" {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("$%s=%s: %v", env, p, err)
		}
		return p
	}
	for _, n := range names {
		if p, err := exec.LookPath(n); err == nil {
			return p
		}
	}
	msg := fmt.Sprintf("no browser: none of %s is in PATH (Debian package %q; or set $%s)",
		strings.Join(names, ", "), pkg, env)
	if inCI() {
		t.Fatalf("%s, and CI=%s says this run must test in a real browser", msg, os.Getenv("CI"))
	}
	t.Skipf("%s; skipping the browser test (with CI=true this fails)", msg)
	return ""
}

// startServer runs a Starling node on loopback with free ports; tune, if
// given, changes the configuration first.
func startServer(t *testing.T, tune ...func(*config.Config)) *server.Server {
	t.Helper()
	cfg := testnode.Config()
	cfg.RTC.LoopbackCandidates = true
	cfg.Room.EmptyTimeout = config.Duration(time.Second)
	for _, f := range tune {
		f(&cfg)
	}
	return testnode.Start(t, cfg)
}

// artifactDir is where screenshots go: $STARLING_ARTIFACTS, or
// starling-artifacts in the system's temporary directory.
func artifactDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("STARLING_ARTIFACTS")
	if dir == "" {
		dir = filepath.Join(os.TempDir(), "starling-artifacts")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatalf("artifact directory: %v", err)
	}
	return dir
}

// syncBuffer collects the browser's output.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// chromiumFlags are the command line of a headless Chromium with fake media,
// as ../../shared/STACK.md found working, plus the flags that keep a tab that
// is not in front from being throttled (two tabs share one browser here).
func chromiumFlags(path string, out io.Writer) []chromedp.ExecAllocatorOption {
	return []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(path),
		chromedp.Headless,
		chromedp.NoSandbox, // the tests may run as root
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.WindowSize(1280, 800),
		chromedp.Flag("use-fake-device-for-media-stream", true),
		chromedp.Flag("use-fake-ui-for-media-stream", true),
		chromedp.Flag("autoplay-policy", "no-user-gesture-required"),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.Flag("disable-default-apps", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("disable-background-timer-throttling", true),
		chromedp.Flag("disable-backgrounding-occluded-windows", true),
		chromedp.Flag("disable-renderer-backgrounding", true),
		chromedp.Flag("disable-features", "Translate,MediaRouter,OptimizationHints"),
		chromedp.Flag("password-store", "basic"),
		chromedp.Flag("use-mock-keychain", true),
		chromedp.CombinedOutput(out),
		// No user-data-dir: chromedp makes a fresh one and removes it.
	}
}

// browser is one test's view of a headless Chromium: ctx is a blank tab
// in the test's own browser context, and its pages are tabs beside it.
type browser struct {
	t   *testing.T
	ctx context.Context // the test's first tab, which is kept blank
	out *syncBuffer
}

// sharedChromium is the package's one Chromium with the usual flags,
// started by the first test that needs it and closed by TestMain: a
// launch cost one to three seconds per test. Each test gets its own
// browser context in it (an incognito-like profile: no storage, cookies or
// permissions shared with another test), disposed of when the test ends.
var sharedChromium struct {
	once   sync.Once
	ctx    context.Context // the browser's first tab
	cancel func()
	out    *syncBuffer
	path   string
	err    error
}

// closeSharedChromium ends the shared browser, if it was started.
func closeSharedChromium() {
	if sharedChromium.cancel != nil {
		sharedChromium.cancel()
	}
}

func TestMain(m *testing.M) {
	if !raceEnabled {
		testutil.SetDefaultParallel(laneTests)
	}
	code := m.Run()
	closeSharedChromium()
	removeBuiltBinary()
	os.Exit(code)
}

// launchChromium gives the test a fresh browser context in the package's
// shared headless Chromium, closed when the test ends. With extra options
// (after the usual flags; chromedp.Flag(name, false) drops one) the test
// gets a Chromium process of its own instead.
func launchChromium(t *testing.T, extra ...chromedp.ExecAllocatorOption) *browser {
	t.Helper()
	path := findBrowser(t, "STARLING_CHROMIUM", "chromium", "chromium", "chromium-browser", "google-chrome")
	if len(extra) > 0 {
		return launchOwnChromium(t, path, extra...)
	}
	sc := &sharedChromium
	sc.once.Do(func() {
		sc.out, sc.path = &syncBuffer{}, path
		allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), chromiumFlags(path, sc.out)...)
		ctx, cancel := chromedp.NewContext(allocCtx)
		sc.ctx, sc.cancel = ctx, func() { cancel(); cancelAlloc() }
		start := time.Now()
		if sc.err = chromedp.Do(ctx); sc.err != nil { // starts the browser, no timeout
			return
		}
		v, err := chromedp.Run(ctx, chromedp.Evaluate[string](`navigator.userAgent`))
		if err != nil {
			sc.err = err
			return
		}
		t.Logf("shared chromium started in %v: %s", time.Since(start).Round(time.Millisecond), v)
	})
	if sc.err != nil {
		t.Fatalf("start %s: %v\n%s", sc.path, sc.err, sc.out.String())
	}
	ctx, cancel := chromedp.NewContext(sc.ctx, chromedp.WithNewBrowserContext())
	t.Cleanup(func() {
		cancel()
		if t.Failed() {
			t.Logf("shared chromium's output (ALSA lines left out):\n%s", tail(withoutLines(sc.out.String(), "ALSA", "alsa_util"), 4000))
		}
	})
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("a new browser context in chromium: %v", err)
	}
	return &browser{t: t, ctx: ctx, out: sc.out}
}

// launchOwnChromium starts a headless Chromium for this test alone, with
// extra options, that lives until the test ends.
func launchOwnChromium(t *testing.T, path string, extra ...chromedp.ExecAllocatorOption) *browser {
	t.Helper()
	out := &syncBuffer{}
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), append(chromiumFlags(path, out), extra...)...)
	ctx, cancel := chromedp.NewContext(allocCtx)
	t.Cleanup(func() {
		cancel()
		cancelAlloc()
		if t.Failed() {
			t.Logf("chromium output (ALSA lines left out):\n%s", tail(withoutLines(out.String(), "ALSA", "alsa_util"), 4000))
		}
	})
	start := time.Now()
	if err := chromedp.Do(ctx); err != nil { // starts the browser, no timeout
		t.Fatalf("start %s: %v\n%s", path, err, out.String())
	}
	v, err := chromedp.Run(ctx, chromedp.Evaluate[string](`navigator.userAgent`))
	if err != nil {
		t.Fatalf("chromium: %v", err)
	}
	t.Logf("chromium started in %v: %s", time.Since(start).Round(time.Millisecond), v)
	return &browser{t: t, ctx: ctx, out: out}
}

// withoutLines drops the lines that contain any of noise.
func withoutLines(s string, noise ...string) string {
	var keep []string
	for _, l := range strings.Split(s, "\n") {
		skip := false
		for _, n := range noise {
			if strings.Contains(l, n) {
				skip = true
				break
			}
		}
		if !skip {
			keep = append(keep, l)
		}
	}
	return strings.Join(keep, "\n")
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "…" + s[len(s)-n:]
}

// page is one tab with the app open.
type page struct {
	t    *testing.T
	name string
	ctx  context.Context
	mu   sync.Mutex
	logs []string // console messages and exceptions
}

// newPage opens a tab; its console output is logged if the test fails.
func (b *browser) newPage(name string) *page {
	t := b.t
	t.Helper()
	ctx, cancel := chromedp.NewContext(b.ctx)
	p := &page{t: t, name: name, ctx: ctx}
	err := chromedp.Listen(ctx, func(ev any) {
		var line string
		switch ev := ev.(type) {
		case *runtime.EventConsoleAPICalled:
			var args []string
			for _, a := range ev.Args {
				if a.Value != nil {
					args = append(args, string(a.Value))
				} else {
					args = append(args, a.Description)
				}
			}
			line = fmt.Sprintf("console.%s %s", ev.Type, strings.Join(args, " "))
		case *runtime.EventExceptionThrown:
			d := ev.ExceptionDetails
			line = "exception: " + d.Text
			if d.Exception != nil {
				line += " " + d.Exception.Description
			}
		default:
			return
		}
		p.mu.Lock()
		p.logs = append(p.logs, time.Now().Format("15:04:05.000 ")+line)
		p.mu.Unlock()
	})
	if err != nil {
		t.Fatalf("page %s: %v", name, err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			p.mu.Lock()
			t.Logf("page %s console:\n  %s", name, strings.Join(p.logs, "\n  "))
			p.mu.Unlock()
		}
		cancel()
	})
	return p
}

// do runs actions with a timeout.
func (p *page) do(timeout time.Duration, steps ...chromedp.Action[chromedp.Void]) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, timeout)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		p.t.Fatalf("page %s: %v", p.name, err)
	}
}

// eval evaluates expr (awaiting a promise) and decodes its JSON value into out.
func (p *page) eval(expr string, out any) error {
	ctx, cancel := context.WithTimeout(p.ctx, 10*time.Second)
	defer cancel()
	raw, err := chromedp.Run(ctx, chromedp.Evaluate[[]byte](expr, chromedp.EvalAwaitPromise))
	if err != nil {
		return err
	}
	if out == nil {
		return nil
	}
	return json.Unmarshal(raw, out)
}

// mustEval is eval that fails the test on error.
func (p *page) mustEval(expr string, out any) {
	p.t.Helper()
	if err := p.eval(expr, out); err != nil {
		p.t.Fatalf("page %s: %s: %v", p.name, firstLine(expr), err)
	}
}

// waitFor evaluates expr every 100 ms until ok(decoded value) holds, and
// returns how long that took; on timeout it fails the test with the last value.
func waitFor[T any](p *page, what string, timeout time.Duration, expr string, ok func(T) bool) (T, time.Duration) {
	p.t.Helper()
	start := time.Now()
	var last T
	var lastErr error
	for {
		var v T
		err := p.eval(expr, &v)
		if err == nil && ok(v) {
			return v, time.Since(start)
		}
		last, lastErr = v, err
		if time.Since(start) > timeout {
			b, _ := json.Marshal(last)
			p.t.Fatalf("page %s: %s: not after %v (last value %s, error %v)", p.name, what, timeout, b, lastErr)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func firstLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i] + " …"
	}
	return s
}

// screenshot saves a PNG of the page's viewport under artifactDir and returns its path.
func (p *page) screenshot(file string) string {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, 10*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		p.t.Fatalf("page %s: screenshot: %v", p.name, err)
	}
	path := filepath.Join(artifactDir(p.t), file)
	if err := os.WriteFile(path, png, 0o644); err != nil {
		p.t.Fatal(err)
	}
	p.t.Logf("screenshot of page %s: %s", p.name, path)
	return path
}

// parallelUnlessRace runs t beside the package's other parallel tests,
// except under -race: there a Firefox and two three-node clusters sharing
// two cores with the race detector starved each other (CI: a WHEP page
// decoded no video in 20 s, a server took over 10 s to shut down).
func parallelUnlessRace(t *testing.T) {
	if !raceEnabled {
		t.Parallel()
	}
}

// pageLanes is how many of the tests that once ran serially (one server,
// a few pages of the shared Chromium) run at once. Without the race
// detector they run two at a time beside the parallel ones (the two
// three-node cluster tests and Firefox's WHIP/WHEP, which mostly wait on
// their processes), instead of one after another and those starting only
// after all of them (the package took 107 s at load 16-40: 68 s of these,
// then 38 s of the cluster tests; the pages' tests use about a fifth of
// the CPU they wait on). Under -race they stay serial, as before.
const pageLanes = 2

var pageLane = make(chan struct{}, pageLanes)

// inPageLane makes t one of the page lanes' tests; its lane is released
// after t's cleanups (its pages, browser context and server are gone).
func inPageLane(t *testing.T) {
	if raceEnabled {
		return
	}
	t.Parallel()
	pageLane <- struct{}{}
	t.Cleanup(func() { <-pageLane })
}

// laneTests is the number of tests that call inPageLane plus those that
// call parallelUnlessRace: TestMain lets that many run at once, so that
// lane tests waiting for the lane do not hold go test's places (2 on two
// cores) and keep the parallel tests from starting.
const laneTests = 18
