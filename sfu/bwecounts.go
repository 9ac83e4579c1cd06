package sfu

import "sync/atomic"

// BWECounters are one engine's congestion control events: those of its
// subscriber connections' estimators. Counters has the same events for
// the whole process; these let a test (or an operator with several engines
// in one process) tell one server's from another's, so that tests of
// congestion control need not run one at a time.
type BWECounters struct {
	DelayDecreases uint64 // estimates lowered on a growing delay
	LossDecreases  uint64 // estimates capped on loss
	Probes         uint64 // probes run
	ProbeRaises    uint64 // probes that raised an estimate
	// PaddingPlanned is the padding-only packets the probes set out to
	// send (their rate times their length, in padding packets), and
	// PaddingSent those written: a probe that sent less than it planned
	// shows as a gap between the two.
	PaddingPlanned uint64
	PaddingSent    uint64 // padding-only packets written (the probes' payload)
	FeedbackTapped uint64 // feedback packets read off the batched socket
	FeedbackPion   uint64 // feedback packets read through pion
	// FeedbackTimeouts counts estimates cut because feedback stopped while
	// packets were outstanding (bwetimeout.go).
	FeedbackTimeouts uint64
}

// bweCounts is BWECounters as it is counted: an estimator adds to its
// engine's (newBWE gives one of its own to an estimator without engine).
type bweCounts struct {
	delayDecreases, lossDecreases, probes, probeRaises atomic.Uint64
	paddingSent, feedbackTapped, feedbackPion          atomic.Uint64
	feedbackTimeouts, paddingPlanned                   atomic.Uint64
}

func (c *bweCounts) read() BWECounters {
	return BWECounters{
		DelayDecreases: c.delayDecreases.Load(),
		LossDecreases:  c.lossDecreases.Load(),
		Probes:         c.probes.Load(),
		ProbeRaises:    c.probeRaises.Load(),
		// Planned before sent: a reader that sees sent >= planned knows
		// that every probe planned by then has been written.
		PaddingPlanned:   c.paddingPlanned.Load(),
		PaddingSent:      c.paddingSent.Load(),
		FeedbackTapped:   c.feedbackTapped.Load(),
		FeedbackPion:     c.feedbackPion.Load(),
		FeedbackTimeouts: c.feedbackTimeouts.Load(),
	}
}

// BWECounters returns the engine's congestion control totals.
func (e *Engine) BWECounters() BWECounters { return e.bweCounts.read() }

// PLIsReceived is how many keyframe requests (PLI, FIR) the engine's
// subscriber connections have read: Counters.PLIsReceived for this engine
// alone, so that a test that counts them (a burst of requests, coalesced)
// need not be the only one running in its process.
func (e *Engine) PLIsReceived() uint64 { return e.plisReceived.Load() }
