// Package clock holds Starling's two clocks.
//
// Nanos is for everything that measures intervals (keyframe-request
// throttles, layer liveness, jitter, sender-report arithmetic, speaker
// windows): it reads like unix nanoseconds, anchored to the wall clock when
// the process started, but advances with the monotonic clock, so a step of
// the system's wall clock (an NTP correction, an operator's date -s) never
// makes it jump. time.Now().UnixNano() does jump, and a step of an hour back
// used to hold keyframe requests for an hour.
//
// Wall is the wall clock, for what is sent or checked as wall time: the NTP
// time in sender reports, token issue and expiry times, webhook times.
// Tests step it with Step to check that the server keeps working through
// a wall-clock jump.
package clock

import (
	"sync/atomic"
	"time"
)

var (
	start = time.Now()
	base  = start.UnixNano()
	step  atomic.Int64 // test hook: added to Wall
)

// Nanos is a step-free clock in unix-nanosecond units (see the package
// comment). It does not allocate.
func Nanos() int64 { return base + int64(time.Since(start)) }

// Wall is the wall clock (time.Now, plus any test Step). The result keeps
// Go's monotonic reading, so Sub between two Wall times is an interval.
func Wall() time.Time {
	if d := step.Load(); d != 0 {
		return time.Now().Add(time.Duration(d))
	}
	return time.Now()
}

// Step moves Wall by d (tests: a wall-clock jump). Nanos does not move.
func Step(d time.Duration) { step.Add(int64(d)) }

// Micros is Nanos in microseconds.
func Micros() int64 { return Nanos() / 1000 }
