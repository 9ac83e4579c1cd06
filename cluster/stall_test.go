package cluster_test

import (
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/starling-rtc/starling/client"
	"github.com/starling-rtc/starling/config"
	"github.com/starling-rtc/starling/protocol"
)

// A node whose heartbeats stop arriving while it lives (its process, or
// the process of the node listening, stalled: a test cluster's nodes share
// one process, and a starved machine holds them all for seconds) is not
// found gone: it answers a ping. Found gone, its participants left every
// room elsewhere and, a resume window later, its members were purged from
// the room state, their slots free for new joins: TestJoinStorm under
// -race once let 29 into a room of 22. Here n1 misses n0's heartbeats for
// two of its silent spells (past where the purge came, hbExpiry and the
// tests' 1 s resume window); b on n1 still sees a (on n0), and the room of
// two stays full.
func TestStalledNodeNotFoundGone(t *testing.T) {
	parallel(t)
	srvs := startCluster(t, 2, func(c *config.Config) { c.Limits.MaxParticipants = 2 })
	a := join(t, srvs[0], "stall", "a")
	b := join(t, srvs[1], "stall", "b")
	seeEachOther(t, a, b)

	n1 := srvs[1].Cluster()
	// Heard first: a node never heard goes by other rules (neverHeard).
	eventually(t, 20*time.Second, "n1 hears n0", func() bool { return len(n1.Nodes()) == 2 })
	before := n1.SilentAlive()
	n1.MissHeartbeats("n0", true)
	eventually(t, 30*time.Second, "n1 finds n0 silent but answering twice, or b is told a left", func() bool {
		return n1.SilentAlive() >= before+2 || !knows(b, a.ParticipantID())
	})
	n1.MissHeartbeats("n0", false)
	if !knows(b, a.ParticipantID()) {
		t.Fatal("n1 found n0 gone while it lived: b was told a left")
	}
	keys, err := n1.RoomKeys("stall")
	if err != nil {
		t.Fatal(err)
	}
	if len(keys["member"]) != 2 || len(keys["slot"]) != 2 {
		t.Fatalf("the room state has %d members and %d slots, want 2 and 2 (a's purged?)", len(keys["member"]), len(keys["slot"]))
	}
	api, _ := client.LoopbackAPI()
	c, err := client.Dial(ctxT(t, 15*time.Second), srvs[1].SignalingURL(), "stall", client.Options{Name: "c", API: api})
	var perr *protocol.Error
	if !errors.As(err, &perr) || perr.Code != protocol.CodeTooLarge {
		if c != nil {
			c.Close()
		}
		t.Fatalf("a third join on n1: %v, want error %d (room full)", err, protocol.CodeTooLarge)
	}
}

// A join stalled between claiming its slot and writing its member key
// (a starved process, a store electing a leader) for longer than a slot
// held by no member may stay (staleSlot; here shortened on n1 to 1 ns) has
// its slot taken back by a join that finds the room full. When it goes on,
// it confirms its slot, finds it lost, and undoes itself: its client is
// told to try again (503), and its retry finds the room full. Before, it
// wrote its member key and got in beside the join that took its slot: a
// room of one held two.
func TestStalledJoinLosesItsSlot(t *testing.T) {
	parallel(t)
	srvs := startCluster(t, 2, func(c *config.Config) { c.Limits.MaxParticipants = 1 })
	stalled, release := make(chan struct{}), make(chan struct{})
	var once, released sync.Once
	srvs[0].Cluster().OnSlotClaimed(func() {
		once.Do(func() { close(stalled); <-release }) // the first try only
	})
	// Released however the test ends: a test that failed before its
	// release (b's join refused under load 70) left a's join stalled for
	// good, a goroutine of n0 for the rest of the package's run. Cleanups
	// run last first: before the cluster's shutdown.
	releaseJoin := func() { released.Do(func() { close(release) }) }
	t.Cleanup(releaseJoin)
	srvs[1].Cluster().SetStaleSlot(time.Nanosecond)
	api, _ := client.LoopbackAPI()
	aErr := make(chan error, 1)
	go func() {
		a, err := client.Dial(ctxT(t, 30*time.Second), srvs[0].SignalingURL(), "takeback", client.Options{Name: "a", API: api})
		if err == nil {
			t.Cleanup(a.Close)
		}
		aErr <- err
	}()
	select {
	case <-stalled:
	case err := <-aErr:
		t.Fatalf("a's join ended before it stalled: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("a's join never reached its member key")
	}
	b := join(t, srvs[1], "takeback", "b") // takes a's slot back
	releaseJoin()
	err := <-aErr
	var perr *protocol.Error
	if !errors.As(err, &perr) || perr.Code != protocol.CodeTooLarge {
		t.Fatalf("a's join, stalled while its slot was taken back: %v, want error %d (room full)", err, protocol.CodeTooLarge)
	}
	keys, err := srvs[1].Cluster().RoomKeys("takeback")
	if err != nil {
		t.Fatal(err)
	}
	if len(keys["member"]) != 1 || len(keys["slot"]) != 1 {
		t.Fatalf("the room state has %d members and %d slots, want b's alone", len(keys["member"]), len(keys["slot"]))
	}
	if b.LastJoin().Room.SID == "" {
		t.Fatal("b has no room")
	}
}
