package main_test

import (
	"testing"

	"github.com/starling-rtc/starling/internal/testutil"
)

// TestMain fails the package's tests if goroutines outlive them: every
// long-lived component here (its loops, timers, writers) must end when it
// is closed. The binary the tests built once is removed after them.
func TestMain(m *testing.M) {
	parallel := 4
	if raceEnabled {
		parallel = 0 // go test's own
	}
	testutil.VerifyTestMain(removingBinary{m}, parallel)
}

// removingBinary runs the tests, then removes the binary they built.
type removingBinary struct{ m *testing.M }

func (r removingBinary) Run() int {
	code := r.m.Run()
	removeStarlingBinary()
	return code
}

// parallelUnlessRace runs t in parallel with the package's other tests
// that run the binary or ffmpeg (4 at once unless -test.parallel says
// otherwise): they mostly wait on child processes, media paced in real
// time and cluster timers, and one after another they were most of the
// package's time. Under -race the CPU is the detector's, and they run one
// after another as before.
func parallelUnlessRace(t *testing.T) {
	if !raceEnabled {
		t.Parallel()
	}
}
