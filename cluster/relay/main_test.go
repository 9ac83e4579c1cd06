package relay

import (
	"testing"

	"github.com/starling-rtc/starling/internal/leakcheck"
)

// Every test closes what it opens: no goroutine may outlive a Transport.
func TestMain(m *testing.M) { leakcheck.Main(m) }
