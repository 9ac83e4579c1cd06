package sfu

import (
	"math"
	"strings"
	"sync"
	"time"
)

// fallbackEstimator estimates a subscriber's downlink when TWCC was not
// negotiated: from REMB when the client sends it (its own estimate), else
// from the loss its receiver reports show, the way a loss-based controller
// does: above 10% loss the rate drops in proportion, below 2% it grows 5%
// per step, at most one step per 200 ms.
type fallbackEstimator struct {
	mu       sync.Mutex
	rate     float64
	lastStep time.Time
	remb     float64
	rembAt   time.Time
}

const (
	fallbackMin  = 100_000
	fallbackMax  = 50_000_000
	rembFresh    = 5 * time.Second
	lossStep     = 200 * time.Millisecond
	lossHigh     = 0.10
	lossLow      = 0.02
	lossIncrease = 1.05
)

func newFallbackEstimator(initial int) *fallbackEstimator {
	if initial <= 0 {
		initial = 3_000_000
	}
	return &fallbackEstimator{rate: float64(initial)}
}

// onREMB records the receiver's own estimate.
func (f *fallbackEstimator) onREMB(bps float32, now time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	// The value comes from the network: keep it a sane bit rate.
	v := float64(bps)
	if math.IsNaN(v) || v < 0 {
		v = 0
	}
	f.remb, f.rembAt = min(v, maxREMB), now
}

// maxREMB bounds a subscriber's claimed bandwidth (10 Gbit/s).
const maxREMB = 10e9

// onLoss applies one receiver report's fraction lost (0..255 = 0..1).
func (f *fallbackEstimator) onLoss(fractionLost uint8, now time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if now.Sub(f.lastStep) < lossStep {
		return
	}
	loss := float64(fractionLost) / 256
	switch {
	case loss > lossHigh:
		f.rate *= 1 - loss/2
	case loss < lossLow:
		f.rate *= lossIncrease
	default:
		return
	}
	f.rate = max(fallbackMin, min(f.rate, fallbackMax))
	f.lastStep = now
}

// estimate is the REMB value while fresh, else the loss-based rate.
func (f *fallbackEstimator) estimate(now time.Time) uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.rembAt.IsZero() && now.Sub(f.rembAt) < rembFresh {
		return uint64(f.remb)
	}
	return uint64(f.rate)
}

// twccNegotiated reports whether an SDP enables transport-wide congestion control feedback.
func twccNegotiated(sdp string) bool {
	return strings.Contains(sdp, "transport-wide-cc")
}
