package server_test

import (
	"fmt"
	"os"
	"slices"
	"sync"
	"testing"
	"time"
)

// The package's tests are scheduled instead of go test's plain "serial
// first, then N at once". Tests that judge something on time (a real-time
// mixer, congestion control reading delay, keyframe request windows,
// round trips) used to run one after another, before the parallel phase:
// about 110 s of a package whose tests mostly wait on media paced in real
// time. Here they run maxTiming at a time (groupLimit of each group at
// most), but never beside light tests: on a machine loaded 20 deep by other work,
// they failed with light tests around them (the mixer's loud mix never
// came, 98.8% of packets recovered for 99.5%, a 1 s round trip) and passed
// without, even three at once. Light tests run first, capacity at once,
// long ones (external peers, production timeouts) before the others, the
// longest of them first (parallelLongest), then the timing-judging ones.
// A test that must be alone in the process (it reads process-wide
// counters) stays serial; none does now: the counters the tests read are
// their own server's (sfu.Engine.BWECounters, PLIsReceived). The
// sender-report test is serial: it is sensitive to the least scheduling
// delay (report stamps).
//
// Under -race the timing-judging tests stay serial, before the parallel
// phase, as go test runs them (light tests run defaultParallel at once).

// Groups of timing tests of which only a few run at the same time
// (groupLimit).
const (
	// groupCongestion: congestion control on, which reads a CPU starved by
	// the others as a congested network: two at a time. (It was one at a
	// time while the estimator's counters the tests of congestion_test.go
	// read were the process's, sfu.ReadCounters; they read their own
	// server's now, sfu.Engine.BWECounters. One at a time, the group was
	// the timing phase's longest chain.) Every test that turns congestion
	// control on (withBWE) is in it. (Light tests never run beside timing
	// tests; under -race, timing tests run serially.)
	groupCongestion = "congestion"
	// groupMix: the real-time mixer (Opus in Go), the CPU-hungriest
	// timing-judging work: one at a time. (Two at a time, with six timing
	// tests at once, cut the phase from 24 s to 18 s, but under two busy
	// loops the congestion tests beside them read the starved CPU as a
	// congested network and never got their top layer back.)
	groupMix = "mix"
)

// groupLimit is how many tests of group run at once.
func groupLimit(group string) int {
	switch group {
	case groupCongestion:
		return 2
	}
	return 1
}

// maxTiming is how many timing-judging tests run at once: with two, the
// phase was the package's longest. (Three passed side by side under two
// busy loops; four, with the congestion group two at a time, at load
// 20-25: the phase's 20 tests use 4 s of CPU in 28 s. Six, tried in
// session 21, failed the congestion tests and the signaling flood under
// two busy loops: four again.)
const maxTiming = 4

// sched is the package's scheduler; setDefaultParallel sets its capacity
// (defaultParallel, or -test.parallel when given).
var sched = newScheduler(8)

type scheduler struct {
	mu       sync.Mutex
	cond     *sync.Cond
	capacity int            // light tests at once
	lights   int            // light tests running
	waitLite int            // light tests waiting
	waitRank map[int]int    // of which how many of each rank (rankLong...) wait
	timing   int            // timing tests running
	groups   map[string]int // how many timing tests of each group run
	waiting  []*waiter      // timing tests waiting, in the order they start
}

type waiter struct{ group string }

func newScheduler(capacity int) *scheduler {
	s := &scheduler{capacity: capacity, groups: map[string]int{}, waitRank: map[int]int{}}
	s.cond = sync.NewCond(&s.mu)
	return s
}

// Ranks of light tests: those of a higher rank start first.
const (
	rankLight   = 0
	rankLong    = 1 // parallelLong
	rankLongest = 2 // parallelLongest
)

// acquire blocks until a light test of the given rank may run: no timing
// test runs, fewer than capacity light tests run, and no test of a higher
// rank waits. It returns its release, which is idempotent.
func (s *scheduler) acquire(rank int) func() {
	// Under -race the long ones (the CPU-hungry ones among them) do not go
	// first: they come in go test's order, as before.
	if raceEnabled {
		rank = rankLight
	}
	s.mu.Lock()
	s.waitLite++
	s.waitRank[rank]++
	for s.timing > 0 || s.lights >= s.capacity || s.higherWaits(rank) {
		s.cond.Wait()
	}
	s.waitLite--
	s.waitRank[rank]--
	s.lights++
	s.mu.Unlock()
	return s.releaser(func() { s.lights-- })
}

// higherWaits reports whether a light test of a rank above rank waits.
func (s *scheduler) higherWaits(rank int) bool {
	for r, n := range s.waitRank {
		if r > rank && n > 0 {
			return true
		}
	}
	return false
}

// acquireTiming blocks until a timing test of group (or "") may run: no
// light test runs or waits, a timing lane is free, fewer than its group's
// limit of its group run, and it is the first waiting timing test for which all that holds
// (grouped tests first: a group is a chain, the mixer's the package's
// longest).
func (s *scheduler) acquireTiming(group string) func() {
	s.mu.Lock()
	me := &waiter{group: group}
	i := len(s.waiting)
	if group != "" {
		i = slices.IndexFunc(s.waiting, func(x *waiter) bool { return x.group == "" })
		if i < 0 {
			i = len(s.waiting)
		}
	}
	s.waiting = slices.Insert(s.waiting, i, me)
	for s.lights > 0 || s.waitLite > 0 || s.next() != me {
		s.cond.Wait()
	}
	s.waiting = slices.DeleteFunc(s.waiting, func(x *waiter) bool { return x == me })
	s.timing++
	if group != "" {
		s.groups[group]++
	}
	s.cond.Broadcast() // the next timing test may start too
	s.mu.Unlock()
	return s.releaser(func() {
		s.timing--
		if group != "" {
			s.groups[group]--
		}
	})
}

func (s *scheduler) releaser(undo func()) func() {
	var once sync.Once
	return func() {
		once.Do(func() {
			s.mu.Lock()
			undo()
			s.cond.Broadcast()
			s.mu.Unlock()
		})
	}
}

// next is the timing test to start next: the first waiting one that has a
// free lane and whose group runs fewer than its limit; nil if none. A group with a
// test waiting and none running keeps a lane for it: a group is a chain
// (the congestion group's is the phase's longest), and an ungrouped test
// that took the last lane delayed the whole chain.
func (s *scheduler) next() *waiter {
	if s.timing >= maxTiming {
		return nil
	}
	reserved := map[string]bool{}
	for _, x := range s.waiting {
		if x.group != "" && s.groups[x.group] == 0 {
			reserved[x.group] = true
		}
	}
	for _, x := range s.waiting {
		if x.group != "" {
			// A group's first test takes its reserved lane; a further one
			// (groupLimit) leaves the other groups' reserved lanes alone.
			n := s.groups[x.group]
			if n == 0 || (n < groupLimit(x.group) && s.timing+len(reserved) < maxTiming) {
				return x
			}
			continue
		}
		if s.timing+len(reserved) < maxTiming {
			return x
		}
	}
	return nil
}

// parallel runs t in parallel with the package's other light tests.
func parallel(t *testing.T) {
	t.Parallel()
	t.Cleanup(traced(t, "light", sched.acquire(rankLight)))
}

// parallelLong is parallel for a test known to take long (10 s and more
// of waiting: a production-length timeout, an external peer): it starts
// before the other light tests, instead of being the package's tail.
func parallelLong(t *testing.T) {
	t.Parallel()
	t.Cleanup(traced(t, "long", sched.acquire(rankLong)))
}

// parallelLongest is parallelLong for the package's longest light tests
// (20 s and more on a busy machine): they start before the other long
// ones. With all long tests waiting for the first places at once, one of
// them started 10 s late and ended the light phase 10 s after the rest.
func parallelLongest(t *testing.T) {
	t.Parallel()
	t.Cleanup(traced(t, "longest", sched.acquire(rankLongest)))
}

// parallelUnlessRace is parallelLong, except under -race, where t runs
// serially before the parallel phase: there the CPU is the race
// detector's, and a test added to the parallel phase starves the
// timing-judging tests already in it. It is for tests that judge nothing
// on time but still cost CPU (external encoders, child processes):
// serial, they cost the suite their length. They are long (external
// peers on a busy machine).
func parallelUnlessRace(t *testing.T) {
	if !raceEnabled {
		parallelLong(t)
	}
}

// longestUnlessRace is parallelUnlessRace for one of the package's
// longest tests (parallelLongest).
func longestUnlessRace(t *testing.T) {
	if !raceEnabled {
		parallelLongest(t)
	}
}

// timingTest runs t, which judges something on time, beside at most
// maxTiming-1 other timing tests and never beside light tests nor more
// tests of its group (if given) than groupLimit; under -race serially,
// before the parallel phase.
func timingTest(t *testing.T, group ...string) {
	if raceEnabled {
		return
	}
	t.Parallel()
	g := ""
	if len(group) > 0 {
		g = group[0] // one group per test
	}
	t.Cleanup(traced(t, "timing", sched.acquireTiming(g)))
}

// schedStart is when the package's tests started, for traced.
var schedStart = time.Now()

// traced returns release, which with STARLING_TEST_SCHED set also writes
// when t held its claim (to see where the package's time goes).
func traced(t *testing.T, kind string, release func()) func() {
	if os.Getenv("STARLING_TEST_SCHED") == "" {
		return release
	}
	from := time.Since(schedStart)
	var once sync.Once
	return func() {
		once.Do(func() {
			fmt.Fprintf(os.Stderr, "sched: %6.1f %6.1f %s %s\n", from.Seconds(), time.Since(schedStart).Seconds(), kind, t.Name())
			release()
		})
	}
}

// sideBySide runs f as subtests named names, all at once, and returns when
// they are done. Not t.Parallel: a parallel subtest waits for one of go
// test's -parallel places, which other tests hold while they wait in the
// scheduler for this test to end (under -race on two cores, TestBadInput's
// cases deadlocked the package that way). t.Run from several goroutines
// needs no place.
func sideBySide(t *testing.T, names []string, f func(t *testing.T, i int)) {
	var wg sync.WaitGroup
	for i, name := range names {
		wg.Add(1)
		go func() {
			defer wg.Done()
			t.Run(name, func(t *testing.T) { f(t, i) })
		}()
	}
	wg.Wait()
}
