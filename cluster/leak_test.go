package cluster

import (
	"runtime"
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
func TestMain(m *testing.M) {
	testutil.VerifyTestMain(m, max(defaultParallel, runtime.GOMAXPROCS(0)))
}
