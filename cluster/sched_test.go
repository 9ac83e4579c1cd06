package cluster_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/starling-rtc/starling/cluster"
)

// The package's parallel tests take their places here instead of from go
// test (TestMain raises go test's own limit out of the way): go test
// starts waiting tests roughly in source order, so the longest ones (the
// recording takeovers, the slow bus: 25-50 s each) started last, up to a
// minute into the package, and ended it alone with the CPU idle. Here a
// test marked parallelLongest gets a place before any other test takes
// one (half the places at most: longestAtOnce); the capacity is the one go test had (cluster.TestParallel: 12, 4
// under -race, or -test.parallel).
var sched = &scheduler{}

type scheduler struct {
	mu      sync.Mutex
	cond    *sync.Cond
	running int
	// pending counts the tests marked longest that have not got a place
	// yet. They are counted before they pause (go test runs every test up
	// to its t.Parallel one after another, before any parallel test goes
	// on), so when the parallel phase starts it holds all of them.
	pending int
	longest int // longest tests running
	// pendingLong counts, the same way, the long tests (parallelLong)
	// without a place yet: they start after the longest, before the others.
	pendingLong int
	// Dead-node tests (parallelDeadNode): counted like pending before the
	// parallel phase; while any waits or runs, no other test starts.
	pendingDead, deadRunning int
}

// longestAtOnce returns how many of the places the longest tests may hold
// at once: half. All ten at once (recorders, ffmpeg, a slow bus starting
// its cluster) failed four of them in a run beside the server package's
// tests and another cluster test process (load 12-19); the rest start as
// places free up, still before any other test.
func longestAtOnce() int { return max(max(cluster.TestParallel, 1)/2, 1) }

func (s *scheduler) init() {
	if s.cond == nil {
		s.cond = sync.NewCond(&s.mu)
	}
}

// Ranks of tests: a higher one takes its place first.
const (
	rankOrdinary = 0
	rankLong     = 1 // parallelLong
	rankLongest  = 2 // parallelLongest
)

// register counts a test of rank (long or longest) that will ask for a
// place.
func (s *scheduler) register(rank int) {
	s.mu.Lock()
	s.init()
	if rank == rankLongest {
		s.pending++
	} else {
		s.pendingLong++
	}
	s.mu.Unlock()
}

// acquire blocks until t, of rank, may run: a place is free and, if t is
// one of the longest, fewer than longestAtOnce of them run; if it is not,
// no longest test waits for a place it may take, nor, for an ordinary
// test, a long one. It returns the release.
func (s *scheduler) acquire(rank int) func() {
	longest := rank == rankLongest
	s.mu.Lock()
	s.init()
	for s.running >= max(cluster.TestParallel, 1) ||
		s.pendingDead > 0 || s.deadRunning > 0 ||
		(longest && s.longest >= longestAtOnce()) ||
		(!longest && s.pending > 0 && s.longest < longestAtOnce()) ||
		(rank == rankOrdinary && s.pendingLong > 0) {
		s.cond.Wait()
	}
	s.running++
	switch rank {
	case rankLongest:
		s.pending--
		s.longest++
	case rankLong:
		s.pendingLong--
	}
	s.cond.Broadcast() // an ordinary test may go once the longest have what they may take
	s.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			s.mu.Lock()
			s.running--
			if longest {
				s.longest--
			}
			s.cond.Broadcast()
			s.mu.Unlock()
		})
	}
}

// registerDead counts a dead-node test that will ask for a place.
func (s *scheduler) registerDead() {
	s.mu.Lock()
	s.init()
	s.pendingDead++
	s.mu.Unlock()
}

// acquireDead blocks until a dead-node test may run: no other kind of
// test runs (the others wait while a dead-node test waits or runs).
func (s *scheduler) acquireDead() func() {
	s.mu.Lock()
	s.init()
	for s.running > s.deadRunning {
		s.cond.Wait()
	}
	s.pendingDead--
	s.deadRunning++
	s.running++
	s.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			s.mu.Lock()
			s.deadRunning--
			s.running--
			s.cond.Broadcast()
			s.mu.Unlock()
		})
	}
}

// parallelDeadNode runs t, which judges how fast a dead node is noticed
// (within 5 s), beside the package's other dead-node tests only, before
// every other parallel test. They were serial (11 s and 7 s one after
// the other); side by side they are two three-node clusters of mostly
// idle nodes. Under -race serially, as before.
func parallelDeadNode(t *testing.T) {
	if raceEnabled {
		return
	}
	sched.registerDead()
	t.Parallel()
	t.Cleanup(traced(t, sched.acquireDead()))
}

// parallel runs t in parallel with the package's other tests, within the
// scheduler's capacity.
func parallel(t *testing.T) {
	t.Parallel()
	t.Cleanup(traced(t, sched.acquire(rankOrdinary)))
}

// parallelLongest is parallel for the package's longest tests (25 s and
// more idle: recording takeovers after a node's death, a 200 ms bus): they
// take their places before every other test, so they run beside the
// shorter ones instead of after them.
//
// Under -race they do not: there the CPU is the race detector's, and the
// longest ones (recorders, ffmpeg, pion's handshakes) starting together
// starved each other (in the one run tried, at load 22, two of the four
// that started together failed: a resume through a restarted node, a
// recording's status read); they come in go test's order, as before.
func parallelLongest(t *testing.T) {
	if raceEnabled {
		parallel(t)
		return
	}
	sched.register(rankLongest)
	t.Parallel()
	t.Cleanup(traced(t, sched.acquire(rankLongest)))
}

// parallelLong is parallel for the package's long tests (13-23 s idle: a
// drain's handover, a TLS cluster, a node killed before it was heard):
// they take their places after the longest and before the others. Started
// when a place happened to free, they began up to 60 s into the package
// and ended it 15-20 s after the rest. Under -race as parallel.
func parallelLong(t *testing.T) {
	if raceEnabled {
		parallel(t)
		return
	}
	sched.register(rankLong)
	t.Parallel()
	t.Cleanup(traced(t, sched.acquire(rankLong)))
}

// schedStart is when the package's tests started, for traced.
var schedStart = time.Now()

// traced returns release, which with STARLING_TEST_SCHED set also writes
// when t held its place: with go test's own limit raised, a test's elapsed
// time includes its wait here.
func traced(t *testing.T, release func()) func() {
	if os.Getenv("STARLING_TEST_SCHED") == "" {
		return release
	}
	from := time.Since(schedStart)
	var once sync.Once
	return func() {
		once.Do(func() {
			fmt.Fprintf(os.Stderr, "sched: %6.1f %6.1f %s\n", from.Seconds(), time.Since(schedStart).Seconds(), t.Name())
			release()
		})
	}
}

// The package's tests take their places from the scheduler: a test that
// calls t.Parallel itself runs beside all the others at once (go test's
// own limit is raised out of the way), beyond the package's capacity.
func TestTestsTakePlaces(t *testing.T) {
	files, err := filepath.Glob("*_test.go")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for i, line := range strings.Split(string(b), "\n") {
			if strings.TrimSpace(line) == "t.Parallel()" && !allowedParallel[f] {
				t.Errorf("%s:%d: t.Parallel(): call parallel(t) or parallelLongest(t) (sched_test.go) instead", f, i+1)
			}
		}
	}
}

// allowedParallel are the files whose t.Parallel calls take a place
// otherwise: the scheduler's own, busCutTurn's (a place once it has its
// turn), a test whose subtests take one each, and busdial_test.go's
// internal test (package cluster cannot reach this scheduler: it runs
// beside the others, one light test beyond the capacity).
var allowedParallel = map[string]bool{"sched_test.go": true, "partition_test.go": true, "subrestore_test.go": true,
	"busdial_test.go": true}
