package cluster_test

import (
	"testing"
	"time"
)

// Nodes that shut down (drained or not) leave the count of the cluster's
// nodes: the last node left still hears "a majority" and goes on
// recording, where counting the two gone nodes for a minute would make it
// stop its recordings as cut off 5 s after they left (recorder/lease.go).
func TestNodesThatLeftAreNotCounted(t *testing.T) {
	parallelLong(t) // 13-23 s (sched_test.go)
	srvs := startCluster(t, 3, nil)
	for _, s := range srvs {
		eventually(t, 20*time.Second, "every node lists 3 nodes", func() bool { return len(s.Cluster().Nodes()) == 3 })
	}
	for _, s := range srvs[:2] {
		if err := s.Shutdown(ctxT(t, 15*time.Second)); err != nil {
			t.Logf("shutdown: %v", err)
		}
	}
	last := srvs[2].Cluster()
	// Past the 5 s after which a node that hears fewer than a majority of
	// the nodes it counts takes itself for cut off.
	for end := time.Now().Add(7 * time.Second); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
		if !last.HearsMajority() {
			t.Fatal("the last node takes itself for cut off after the two others shut down")
		}
	}
}
