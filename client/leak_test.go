package client

import (
	"os"
	"testing"

	"github.com/starling-rtc/starling/internal/leakcheck"
)

// TestMain fails the package's tests if goroutines outlive them: every
// long-lived component here (its loops, timers, writers) must end when it
// is closed.
func TestMain(m *testing.M) {
	if os.Getenv(closeDeadlockChild) != "" {
		// TestClosePeerDeadlockChild leaves pion's deadlock behind on
		// purpose, in a process of its own.
		os.Exit(m.Run())
	}
	leakcheck.Main(m)
}
