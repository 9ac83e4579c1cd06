package client

import (
	"testing"

	"github.com/starling-rtc/starling/internal/leakcheck"
)

// TestMain fails the package's tests if goroutines outlive them: every
// long-lived component here (its loops, timers, writers) must end when it
// is closed.
func TestMain(m *testing.M) {
	leakcheck.Main(m)
}
