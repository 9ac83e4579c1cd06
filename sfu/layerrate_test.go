package sfu

import (
	"testing"
	"time"
)

// TestRateMemory: a layer's smoothed rate is kept once it has flowed for
// 2 s, stands after the layer stops, and is forgotten after a minute; a
// layer that flowed only briefly (its smoothed rate still ramping) leaves
// the last steady rate in place.
func TestRateMemory(t *testing.T) {
	var m rateMemory
	now := int64(time.Hour)
	tick := int64(monitorInterval)
	for range rateSteadyTicks {
		m.note(2, true, 1_600_000, now)
		now += tick
	}
	m.note(2, false, 1_200_000, now) // stopped: the smoothed rate decays
	if got := m.last(2, now+int64(30*time.Second)); got != 1_600_000 {
		t.Fatalf("30 s after the layer stopped its last rate is %d, want 1600000", got)
	}
	for range 3 { // a brief restart, still ramping
		now += tick
		m.note(2, true, 300_000, now)
	}
	if got := m.last(2, now); got != 1_600_000 {
		t.Fatalf("a 600 ms restart replaced the steady rate with %d", got)
	}
	if got := m.last(2, now+int64(rateMemoryFor)+tick); got != 0 {
		t.Fatalf("over a minute after the layer last flowed steadily its rate is still %d", got)
	}
	if got := m.last(1, now); got != 0 {
		t.Fatalf("a layer that never flowed has rate %d", got)
	}
}
