package cluster_test

import (
	"sync/atomic"
	"testing"

	"github.com/starling-rtc/starling/cluster"
)

// Work a node starts in the background from a bus handler, a room's
// callback or a timer (here the identity check a join schedules) may be
// started while the node's Close waits for its goroutines. Each such
// start used to be a wg.Add of its own: once the node's long-lived
// goroutines had ended, an Add from zero raced with Close's Wait (the race
// detector reports it: c5842aa fixed one site, nodeBack, after a -race run
// of the package) and the work ran on a closed bus. Now everything starts
// through spawn, which refuses once Close has begun. Under -race this test
// fails with the old Adds; without it, it only checks that a closing node
// takes such starts without trouble.
func TestWorkStartedWhileClosing(t *testing.T) {
	parallel(t)
	addr := startNATS(t)
	n, err := cluster.Start(cluster.Options{BusOptions: cluster.BusOptions{NodeID: "closing", Secret: testSecret, NATSURL: "nats://starling:" + testSecret + "@" + addr, Logger: testLogger()}})
	if err != nil {
		t.Fatal(err)
	}
	var closed atomic.Bool
	done := make(chan int)
	go func() {
		<-n.Stopping() // before it, each check would wait its second: the goroutines pile up
		starts := 0
		// No synchronisation with Close but the flag read at each round:
		// the starts before it sees Close return are concurrent with Close.
		for !closed.Load() {
			n.CheckIdentityLater("room")
			starts++
		}
		done <- starts
	}()
	n.Close()
	closed.Store(true)
	t.Logf("%d background starts asked for while the node closed", <-done)
}
