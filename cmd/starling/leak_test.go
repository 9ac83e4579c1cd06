package main_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package's tests if goroutines outlive them: every
// long-lived component here (its loops, timers, writers) must end when it
// is closed. The binary the tests built once is removed after them.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(removingBinary{m})
}

// removingBinary runs the tests, then removes the binary they built.
type removingBinary struct{ m *testing.M }

func (r removingBinary) Run() int {
	code := r.m.Run()
	removeStarlingBinary()
	return code
}
