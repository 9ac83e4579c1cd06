package pcclose

import (
	"os"
	"testing"

	"github.com/starling-rtc/starling/internal/leakcheck"
)

// TestMain fails the package's tests if goroutines outlive them, but in
// TestDeadlockChild's process, which leaves pion's deadlock behind on
// purpose.
func TestMain(m *testing.M) {
	if os.Getenv(deadlockChild) != "" {
		os.Exit(m.Run())
	}
	leakcheck.Main(m)
}
