package sfu

import (
	"sync/atomic"
	"time"

	"github.com/starling-rtc/starling/internal/clock"
)

// A layer's last steady rate, kept after it stops. While a subscriber is
// paused for bandwidth or on a lower layer, the publisher is told to stop
// the top layer (nobody receives it), and the allocator then priced it from
// its picture size (DefaultLayerCost: 2.76 Mbit/s for 1280x720) instead of
// the 1.6 Mbit/s it measured a moment before: a probe had to show 1.2
// Mbit/s more room than the layer needs, and on a link between the two it
// failed for good. The measured rate is kept for rateMemoryFor.

// rateMemoryFor is how long a stopped layer's measured rate stands in for
// its cost: an encoder's rate at one size changes with the picture, but not
// much within a minute; after that the size-based guess is as good.
const rateMemoryFor = 60 * time.Second

// rateSteadyTicks is how many monitor intervals (200 ms) in a row a layer
// must have sent for its smoothed rate to be kept: the smoothing (a fifth
// of each interval) reaches 89% of a restarted layer's rate in 2 s.
const rateSteadyTicks = 10

// rateMemory is a receiver's record of its layers' last steady rates:
// flowing is the monitor's alone, the rates are read by allocators.
type rateMemory struct {
	flowing [MaxLayers]int
	rate    [MaxLayers]atomic.Uint64
	at      [MaxLayers]atomic.Int64 // clock.Nanos of the last store
}

// note records one monitor interval of layer i: moved if it sent bytes,
// smoothed its smoothed rate after the interval.
func (m *rateMemory) note(i int, moved bool, smoothed uint64, now int64) {
	if !moved {
		m.flowing[i] = 0
		return
	}
	if m.flowing[i]++; m.flowing[i] >= rateSteadyTicks {
		m.rate[i].Store(smoothed)
		m.at[i].Store(now)
	}
}

// last is layer i's last steady rate if it is recent (as of now), else 0.
func (m *rateMemory) last(i int, now int64) uint64 {
	if now-m.at[i].Load() > int64(rateMemoryFor) {
		return 0
	}
	return m.rate[i].Load()
}

// LastBitrate is the layer's receive rate the last time it flowed steadily
// (2 s or more), if that was within the last minute; 0 otherwise. The
// allocator prices a stopped layer with it (room.Track.layerCosts).
func (r *Receiver) LastBitrate(layer int8) uint64 {
	if layer < 0 || layer >= MaxLayers {
		return 0
	}
	return r.rates.last(int(layer), clock.Nanos())
}
