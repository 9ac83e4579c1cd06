package main

import (
	"os"
	"testing"

	"github.com/starling-rtc/starling/internal/leakcheck"
	"github.com/starling-rtc/starling/internal/testutil"
)

// TestMain fails the package's tests if goroutines outlive them: every
// long-lived component here (its loops, timers, writers) must end when it
// is closed. A developer's STARLING_RECORD_TOKEN must not change what the
// tests' runs do (they run in parallel, where t.Setenv is not allowed).
func TestMain(m *testing.M) {
	if !raceEnabled {
		// Two load runs and the soak's child process (TestSoak).
		testutil.SetDefaultParallel(3)
	}
	_ = os.Unsetenv("STARLING_RECORD_TOKEN")
	_ = os.Unsetenv("STARLING_KEYS")
	leakcheck.Main(m)
}

// parallelUnlessRace runs t in parallel with the package's other load
// runs, two at once (three places: one is TestSoak's, which goes first,
// churn_test.go sorting before main_test.go) unless -test.parallel says
// otherwise: they mostly
// wait on media paced in real time, and one after another they were most
// of the package's time. Not more: their figures (delivery ratio over the
// window, frames recorded, bit rates) follow the forwarding delay, which
// grew to hundreds of ms with eight runs at once on a busy machine (a
// ratio of 1.07, 110 recorded frames for 120). Under -race the CPU is the
// detector's, and they run one after another as before. TestSoak runs
// beside them too, its soak in a child process of its own (it compares
// the whole process's goroutines and open files before and after).
func parallelUnlessRace(t *testing.T) {
	if !raceEnabled {
		t.Parallel()
	}
}
