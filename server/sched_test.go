package server_test

import (
	"fmt"
	"os"
	"slices"
	"sync"
	"testing"
	"time"
)

// The package's tests are scheduled by weight instead of go test's plain
// "serial first, then N at once". Tests that judge something on time (a
// real-time mixer, congestion control reading delay, keyframe request
// windows, round trips) used to run serially, one after
// another, before the parallel phase: about 110 s of a package whose
// tests mostly wait on media paced in real time. Here they run in the
// parallel phase too, but with a weight that keeps the CPU around them
// light: at most maxTiming of them at once, each counting for several
// light tests, and they start before light tests that are still waiting
// (they are the package's longest chain). A test that must be alone in
// the process (it reads process-wide counters), or that is sensitive to
// the least scheduling delay (sender report stamps), stays serial.
//
// Under -race none of this applies: the detector makes the CPU the
// bottleneck, and timing-judging tests stay serial, before the parallel
// phase, as go test runs them (light tests run defaultParallel at once).

// Test weights, by what a test needs from the machine; the capacity is
// defaultParallel light tests.
const (
	weightLight     = 1 // waits on media and events; judges nothing on time
	weightTiming    = 2 // judges something on time: a light CPU around it
	weightTimingCPU = 3 // judges on time and costs much CPU itself (20+ clients)
	// weightCongestion: congestion control reads a CPU starved by other
	// tests as a congested network (growing delay): fewer around it.
	weightCongestion = 3
)

// Groups of timing tests that never run at the same time.
const (
	// groupCongestion: congestion control on, which reads a CPU starved by
	// the others as a congested network: one at a time. (The tests of
	// congestion_test.go, which also read the estimator's process-wide
	// counters, stay serial.)
	groupCongestion = "congestion"
	// groupMix: the real-time mixer (Opus in Go), the CPU-hungriest
	// timing-judging work; one at a time.
	groupMix = "mix"
)

// maxTiming is how many timing-judging tests run at once.
const maxTiming = 2

// sched is the package's scheduler; setDefaultParallel sets its capacity
// (defaultParallel, or -test.parallel when given).
var sched = newScheduler(8)

type scheduler struct {
	mu       sync.Mutex
	cond     *sync.Cond
	capacity int             // weight units
	used     int             // units held by running tests
	timing   int             // timing tests running
	groups   map[string]bool // groups of the timing tests running
	// waiting timing tests, in the order they start (waiter.before)
	waiting []*waiter
	// light tests waiting that start before other light tests (long ones:
	// external peers and encoders): a long test started last is a tail
	early int
}

type waiter struct {
	w     int
	group string
}

// before: x starts before y. Tests of a group run one after another: the
// group is a chain, the package's longest (the mixer's seven tests), and
// starts first; then the heaviest (longest, as a rule); then first come
// first.
func (x *waiter) before(y *waiter) bool {
	if (x.group != "") != (y.group != "") {
		return x.group != ""
	}
	return x.w > y.w
}

func newScheduler(capacity int) *scheduler {
	s := &scheduler{capacity: capacity, groups: map[string]bool{}}
	s.cond = sync.NewCond(&s.mu)
	return s
}

// acquire blocks until a light test of weight w (early: a long one) may
// run, and returns its release, which is idempotent. A light test does not
// take the room the next timing test needs.
func (s *scheduler) acquire(w int, early bool) func() {
	s.mu.Lock()
	w = min(w, s.capacity)
	if early {
		s.early++
	}
	for (!early && s.early > 0) || s.used+w+s.reserved() > s.capacity {
		s.cond.Wait()
	}
	if early {
		s.early--
	}
	s.used += w
	s.mu.Unlock()
	return s.releaser(w, "", false)
}

// acquireTiming blocks until a timing test of weight w in group (or "")
// may run: a timing lane is free, nothing of its group runs, it fits, and
// it is the first waiting timing test for which all that holds.
func (s *scheduler) acquireTiming(w int, group string) func() {
	s.mu.Lock()
	w = min(w, s.capacity)
	me := &waiter{w: w, group: group}
	i := 0
	for i < len(s.waiting) && !me.before(s.waiting[i]) {
		i++
	}
	s.waiting = slices.Insert(s.waiting, i, me)
	for s.next() != me || s.used+w > s.capacity {
		s.cond.Wait()
	}
	s.waiting = slices.DeleteFunc(s.waiting, func(x *waiter) bool { return x == me })
	s.timing++
	if group != "" {
		s.groups[group] = true
	}
	s.used += w
	s.cond.Broadcast() // the next timing test may fit too
	s.mu.Unlock()
	return s.releaser(w, group, true)
}

func (s *scheduler) releaser(w int, group string, timing bool) func() {
	var once sync.Once
	return func() {
		once.Do(func() {
			s.mu.Lock()
			s.used -= w
			if timing {
				s.timing--
				delete(s.groups, group)
			}
			s.cond.Broadcast()
			s.mu.Unlock()
		})
	}
}

// next is the timing test to start next: the first waiting one that has a
// free lane and whose group is not running; nil if none.
func (s *scheduler) next() *waiter {
	if s.timing >= maxTiming {
		return nil
	}
	for _, x := range s.waiting {
		if x.group == "" || !s.groups[x.group] {
			return x
		}
	}
	return nil
}

// reserved is the room kept for the next timing test, so that a stream
// of light tests cannot keep it waiting.
func (s *scheduler) reserved() int {
	if x := s.next(); x != nil {
		return x.w
	}
	return 0
}

// parallel runs t in parallel with the package's other tests: light.
func parallel(t *testing.T) {
	t.Parallel()
	t.Cleanup(traced(t, weightLight, sched.acquire(weightLight, false)))
}

// parallelLong is parallel for a test known to take long (10 s and more
// of waiting: a production-length timeout, an external peer): it starts
// before the other light tests, instead of being the package's tail.
func parallelLong(t *testing.T) {
	t.Parallel()
	t.Cleanup(traced(t, weightLight, sched.acquire(weightLight, true)))
}

// schedStart is when the package's tests started, for traced.
var schedStart = time.Now()

// traced returns release, which with STARLING_TEST_SCHED set also writes
// when t held its claim (to see where the package's time goes).
func traced(t *testing.T, w int, release func()) func() {
	if os.Getenv("STARLING_TEST_SCHED") == "" {
		return release
	}
	from := time.Since(schedStart)
	var once sync.Once
	return func() {
		once.Do(func() {
			fmt.Fprintf(os.Stderr, "sched: %6.1f %6.1f w%d %s\n", from.Seconds(), time.Since(schedStart).Seconds(), w, t.Name())
			release()
		})
	}
}

// parallelUnlessRace is parallel, except under -race, where t runs
// serially before the parallel phase: there the CPU is the race
// detector's, and a test added to the parallel phase starves the
// timing-judging tests already in it. It is for tests that judge nothing
// on time but still cost CPU (external encoders, child processes):
// serial, they cost the suite their length. They are long (external
// peers on a busy machine): parallelLong.
func parallelUnlessRace(t *testing.T) {
	if !raceEnabled {
		parallelLong(t)
	}
}

// timingTest runs t, which judges something on time, in parallel with
// light tests and at most maxTiming-1 other timing tests, with weight w
// (weightTiming, or weightTimingCPU for a test that costs much CPU
// itself), never at the same time as another test of the same group (if
// given); under -race serially, before the parallel phase. The returned
// release ends its claim early (a test whose timing-judging part is
// over); it also runs at the end of t.
func timingTest(t *testing.T, w int, group ...string) (release func()) {
	if raceEnabled {
		return func() {}
	}
	t.Parallel()
	g := ""
	if len(group) > 0 {
		g = group[0] // one group per test
	}
	release = traced(t, w, sched.acquireTiming(w, g))
	t.Cleanup(release)
	return release
}
