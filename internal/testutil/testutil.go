// Package testutil holds what the tests of several packages share: the
// check that an external tool (ffmpeg, ffprobe) is installed, test media
// made and read, ffprobe's view of a file, the tone detector of the audio
// mix tests, a TCP proxy that can be cut, the goroutine dump of a slow
// shutdown and the TestMain set-up. Only tests import it; it imports no
// Starling package but client and internal/leakcheck, so any package's
// tests but client's may use it (client's use leakcheck).
package testutil

import (
	"bytes"
	"context"
	"flag"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/starling-rtc/starling/internal/leakcheck"
	"go.uber.org/goleak"
)

// InCI reports whether the tests run in CI (CI=true), where a missing tool
// is a failure, not a reason to skip.
func InCI() bool { return os.Getenv("CI") == "true" }

// RequireTool returns the path of an external tool in PATH. When it is
// missing the test is skipped, except in CI, where it fails: .ci/run
// installs it (ffmpeg and ffprobe come with the Debian package ffmpeg).
func RequireTool(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		pkg := name
		if name == "ffprobe" {
			pkg = "ffmpeg"
		}
		if InCI() {
			t.Fatalf("%s not found, and CI=true: CI must install it (.ci/run: apt-get install %s)", name, pkg)
		}
		t.Skipf("%s not installed: skipping (apt-get install %s to run this test; with CI=true this fails)", name, pkg)
	}
	return p
}

// RequireFFmpeg is RequireTool for both ffmpeg and ffprobe.
func RequireFFmpeg(t testing.TB) {
	t.Helper()
	RequireTool(t, "ffmpeg")
	RequireTool(t, "ffprobe")
}

// Logger is the logger of a test's server: silent unless STARLING_TEST_LOG
// is set, then to stderr at level.
func Logger(level slog.Level) *slog.Logger {
	var w io.Writer = io.Discard
	if os.Getenv("STARLING_TEST_LOG") != "" {
		w = os.Stderr
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level}))
}

// Ctx is a context that ends after d or with the test.
func Ctx(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	Cleanup(t, cancel)
	return ctx
}

// Cleanup is t.Cleanup(f), except that f, and all it holds, is let go
// once it has run. The testing package keeps a test's cleanup functions
// after they ran (its list is cut, not cleared), and keeps a parallel
// test until the last test of the package ends: a server or client a
// cleanup closes stayed in memory for the rest of the package. In the
// server package the live heap grew steadily to some 260 MB, and a
// collection of that heap on a starved machine marked for 2-5 s, with
// every goroutine that allocated (the tests' publishers and readers,
// pion's read and write paths) made to help: media stood still for
// seconds in tests that judge its timing (TestStalledSubscribersDoNotSlowOthers).
func Cleanup(t testing.TB, f func()) {
	var once atomic.Pointer[func()]
	once.Store(&f)
	t.Cleanup(func() {
		if g := once.Swap(nil); g != nil {
			(*g)()
		}
	})
}

// VerifyTestMain runs a package's tests (call it from TestMain) with
// -test.parallel defaulting to parallel when that is above 0 (see
// SetDefaultParallel), and fails them if goroutines outlive them: every
// long-lived component (its loops, timers, writers) must end when it is
// closed.
func VerifyTestMain(m goleak.TestingM, parallel int) {
	if parallel > 0 {
		SetDefaultParallel(parallel)
	}
	leakcheck.Main(m)
}

// SetDefaultParallel sets -test.parallel to n unless the command line gives
// it (call it from TestMain, before m.Run): packages whose tests mostly
// wait (media paced in real time, cluster timers, child processes) run
// more than GOMAXPROCS of them at once.
func SetDefaultParallel(n int) {
	flag.Parse()
	given := false
	flag.Visit(func(f *flag.Flag) { given = given || f.Name == "test.parallel" })
	if !given {
		_ = flag.Set("test.parallel", strconv.Itoa(n))
	}
}

// RequirePython runs `/usr/bin/python3 script check` (a test peer that
// checks the Python pieces it needs); when that fails the test is skipped
// outside CI and fails in CI, saying that what is not usable and which
// Debian packages to install (.ci/run installs them).
func RequirePython(t testing.TB, script, what, install string) {
	t.Helper()
	out, err := exec.Command("/usr/bin/python3", script, "check").CombinedOutput()
	if err == nil {
		return
	}
	msg := what + " from Python is not usable (" + string(bytes.TrimSpace(out)) + "; " + err.Error() + "): install " + install
	if InCI() {
		t.Fatal(msg)
	}
	t.Skip(msg + "; skipping (CI installs them)")
}
