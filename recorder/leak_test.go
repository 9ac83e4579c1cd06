package recorder

import (
	"runtime"
	"testing"

	"github.com/starling-rtc/starling/internal/testutil"
)

// TestMain fails the package's tests if goroutines outlive them: every
// long-lived component here (its loops, timers, writers) must end when it
// is closed.
//
// It runs defaultParallel (or GOMAXPROCS, if more) of the package's parallel tests
// at once (parallel_*_test.go: 4, GOMAXPROCS under the race detector)
// unless -test.parallel is given: most tests play media in real time and
// wait (the package used ~16 s of CPU in a run of over a minute), so
// GOMAXPROCS (go test's default, 2 on the CI machine) left the CPU idle.
func TestMain(m *testing.M) {
	testutil.VerifyTestMain(m, max(defaultParallel, runtime.GOMAXPROCS(0)))
}
