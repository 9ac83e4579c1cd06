package cluster

import (
	"flag"
	"runtime"
	"strconv"
	"testing"

	"github.com/starling-rtc/starling/internal/testutil"
)

// TestMain fails the package's tests if goroutines outlive them: every
// long-lived component here (its loops, timers, writers) must end when it
// is closed.
//
// It runs defaultParallel (or GOMAXPROCS, if more) of the package's parallel tests
// at once (parallel_*_test.go: 12, 4 under the race detector) unless
// -test.parallel is given: a test cluster mostly waits (heartbeats,
// JetStream elections, media paced in real time), so GOMAXPROCS (go test's
// default, 2 on the CI machine) left the CPU idle. Tests that crash nodes
// and assert how fast the others notice (TestNodesListAndDeadNode,
// TestFailoverNodeKilled), and the join storm, which loads the CPU, stay
// serial: Go runs them before any parallel one starts. (nats-server
// gossips route addresses even with NoAdvertise, so a node behind a test's
// proxies once learnt a peer's direct address and routed around its
// proxy: the tests with proxies now set cluster.advertise to the node's
// proxy.)
//
// The places are the package's scheduler's (sched_test.go, TestParallel),
// which starts the longest tests first; go test's own limit is raised out
// of its way (a test waiting there would hold one of go test's places).
func TestMain(m *testing.M) {
	flag.Parse()
	TestParallel = max(defaultParallel, runtime.GOMAXPROCS(0))
	if f := flag.Lookup("test.parallel"); parallelGiven() {
		TestParallel, _ = strconv.Atoi(f.Value.String())
	}
	// Always, even when given: a longest test waiting for one of go test's
	// places while ordinary ones hold them all and wait for it here would
	// never start.
	_ = flag.Set("test.parallel", "1000")
	testutil.VerifyTestMain(m, 0)
}

// parallelGiven reports whether the command line gave -test.parallel.
func parallelGiven() bool {
	given := false
	flag.Visit(func(f *flag.Flag) { given = given || f.Name == "test.parallel" })
	return given
}
