package cluster_test

import (
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/starling-rtc/starling/cluster"
	"github.com/starling-rtc/starling/config"
)

// lostKeyRuns numbers the runs of TestNodeKeyMissedByTheWatch (-count):
// each node of this process drops the first delivery of their nodes' keys
// only (cluster.LoseNodeKey), so each run's nodes need ids of their own.
var lostKeyRuns atomic.Int32

// A node killed before the others heard it is known to them only from its
// node key, which their watch of the node keys delivers. That watch's
// consumer lives on one server of the stream, and when that server is the
// node that dies (and led the JetStream meta layer, which must elect a new
// leader before any consumer is created again), the watch stalls: the
// client recreates its consumer only after 10 s without heartbeats, and
// quietly not at all while the meta layer has no leader. A key it had not
// delivered yet stayed unknown, and the dead node was not found gone
// within 30 s (seen once in TestDeadJoinSlotFreed). Here every node's
// watch misses the other nodes' keys (their first delivery is dropped, as
// by a consumer that died), the meta leader is killed, and the two others,
// which never heard it, must find it gone: the watch checks the store's
// newest node key change every 2 s and starts again when it lacks it.
// Before, it was never found gone.
func TestNodeKeyMissedByTheWatch(t *testing.T) {
	parallelLong(t) // 12-20 s (sched_test.go)
	prefix := fmt.Sprintf("lostkey%d-", lostKeyRuns.Add(1))
	for i := range 3 {
		cluster.LoseNodeKey(prefix + "n" + itoa(i))
	}
	// (A cluster started again on fresh ports keeps the ids, and its
	// watches lose nothing: the drops went to the first attempt's.)
	srvs := startCluster(t, 3, func(c *config.Config) { c.Cluster.NodeID = prefix + c.Cluster.NodeID })
	d := -1
	eventually(t, 20*time.Second, "a node leads the JetStream meta layer", func() bool {
		for i, s := range srvs {
			if s.Cluster().LeadsMeta() {
				d = i
				return true
			}
		}
		return false
	})
	dead := srvs[d].Cluster().ID()
	a, b := srvs[(d+1)%3].Cluster(), srvs[(d+2)%3].Cluster()
	// The others have not heard it (its first heartbeats lost, as for a
	// node killed a second after the last node's start).
	a.Unhear(dead)
	b.Unhear(dead)
	srvs[d].Cluster().Crash()
	killed := time.Now()
	for _, n := range []*cluster.Node{a, b} {
		eventually(t, 40*time.Second, n.ID()+" finds the dead meta leader gone", func() bool { return n.FoundGone(dead) })
		t.Logf("%s found %s gone %.1f s after the kill", n.ID(), dead, time.Since(killed).Seconds())
	}
	// And the two live nodes know each other: they heard each other all
	// along, and each other's keys reached their watches in the end.
	for _, n := range []*cluster.Node{a, b} {
		if len(n.OtherNodes()) != 1 {
			t.Errorf("%s lists %d other nodes, want 1", n.ID(), len(n.OtherNodes()))
		}
	}
	eventually(t, 20*time.Second, "each live node knows the other's key", func() bool {
		return a.NodeKnown(b.ID()) && b.NodeKnown(a.ID())
	})
}

// A node known from its key alone is declared gone 7 s after the key
// reached a node; the node whose watch delivered it first declares it
// gone first, purges its members and deletes its key. A node whose watch
// delivered the key later (its consumer lived on the dead node), or not
// before the deletion, lost its only sign of the dead node and never
// found it gone: its stubs stayed, and a slot a join on the dead node
// claimed in its room was never freed (TestDeadJoinSlotFreed, once). Here
// a's watch misses the dead meta leader's key until b has found it gone
// and deleted its key: a must then find it gone too, at once (the
// deletion says another node found it gone, and it answers no ping).
func TestNodeKeyDeletedBeforeItWasSeen(t *testing.T) {
	parallelLong(t) // 12-20 s (sched_test.go)
	srvs := startCluster(t, 3, nil)
	d := -1
	eventually(t, 20*time.Second, "a node leads the JetStream meta layer", func() bool {
		for i, s := range srvs {
			if s.Cluster().LeadsMeta() {
				d = i
				return true
			}
		}
		return false
	})
	dead := srvs[d].Cluster().ID()
	a, b := srvs[(d+1)%3].Cluster(), srvs[(d+2)%3].Cluster()
	eventually(t, 20*time.Second, "b knows the meta leader from its key", func() bool { return b.NodeKnown(dead) })
	a.HideNodeKey(dead, true)
	eventually(t, 20*time.Second, "a's watch no longer delivers the meta leader's key", func() bool { return !a.NodeKnown(dead) })
	a.Unhear(dead)
	b.Unhear(dead)
	srvs[d].Cluster().Crash()
	killed := time.Now()
	eventually(t, 40*time.Second, "b finds the dead node gone and deletes its key", func() bool {
		return b.FoundGone(dead) && !b.NodeKnown(dead)
	})
	t.Logf("b found it gone and deleted its key %.1f s after the kill", time.Since(killed).Seconds())
	if a.FoundGone(dead) {
		t.Fatal("a found the dead node gone without its key")
	}
	a.HideNodeKey(dead, false)
	shown := time.Now()
	eventually(t, 20*time.Second, "a finds the dead node gone from its key's deletion", func() bool { return a.FoundGone(dead) })
	t.Logf("a found it gone %.1f s after its watch delivered again", time.Since(shown).Seconds())
}
