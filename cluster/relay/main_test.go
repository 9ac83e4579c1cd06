package relay

import (
	"testing"

	"github.com/starling-rtc/starling/internal/leakcheck"
)

// Every test closes what it opens: no goroutine may outlive a Transport.
func TestMain(m *testing.M) { leakcheck.Main(m) }

// The package's tests that take 0.4 s and more run side by side
// (t.Parallel). They wait on the relay's timers (liveness, NACK and
// monitor rounds) and loopback round trips, not on the CPU, and read only
// their own transports' counters; one after another they were the whole
// package (6 s under load), on the worker of go test ./... that runs the
// packages ahead of the server package (docs/suite-lanes.md).
