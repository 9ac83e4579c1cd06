package cluster_test

import (
	"encoding/json"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/starling-rtc/starling/client"
	"github.com/starling-rtc/starling/config"
	"github.com/starling-rtc/starling/protocol"
	"github.com/starling-rtc/starling/server"
)

// Write-back after a bus cut (cluster/writeback.go): the members of a node
// cut off from the bus are held to the room's rules when it comes back.

// cutCluster starts three nodes on an external NATS server; node 2 reaches
// it through the returned proxy (cut it to cut n2 off the bus), as busCut
// does, with busCutStoreWait. The caller holds a bus-cut turn (busCutTurn).
func cutCluster(t *testing.T, window time.Duration, tune func(*config.Config)) ([]*server.Server, *cutProxy) {
	t.Helper()
	addr := startNATS(t)
	proxy := newCutProxy(t, addr)
	srvs := make([]*server.Server, 3)
	for i := range srvs {
		cfg := nodeConfig([]int{0, 0, 0}, i, func(c *config.Config) {
			c.Room.ResumeWindow = config.Duration(window)
			c.Cluster.Listen, c.Cluster.Routes = "", nil
			target := addr
			if i == 2 {
				target = fmt.Sprintf("127.0.0.1:%d", proxy.port())
			}
			c.Cluster.NATSURL = "nats://starling:" + testSecret + "@" + target
			c.Cluster.StoreWait = config.Duration(busCutStoreWait)
			if tune != nil {
				tune(c)
			}
		})
		srvs[i] = serveNode(t, cfg, i)
	}
	for _, s := range srvs {
		eventually(t, 10*time.Second, "every node lists 3 nodes", func() bool { return len(s.Cluster().Nodes()) == 3 })
	}
	return srvs, proxy
}

// cutTest starts a write-back test: in parallel with the package's other
// tests, holding a bus-cut turn (busCutTurn: until its nodes are shut
// down), on cutCluster's three nodes.
func cutTest(t *testing.T, window time.Duration, tune func(*config.Config)) ([]*server.Server, *cutProxy) {
	t.Helper()
	busCutTurn(t)
	return cutCluster(t, window, tune)
}

// cutRoom is cutTest with room rm joined: alice and dave on n2 (the node
// to be cut off), bob on n0, all seeing each other. opts gives a name's
// join options.
func cutRoom(t *testing.T, rm string, window time.Duration, tune func(*config.Config),
	opts func(name string) []func(*client.Options)) (srvs []*server.Server, proxy *cutProxy, alice, dave, bob *client.Client) {
	t.Helper()
	srvs, proxy = cutTest(t, window, tune)
	if opts == nil {
		opts = func(string) []func(*client.Options) { return nil }
	}
	alice = join(t, srvs[2], rm, "alice", opts("alice")...)
	dave = join(t, srvs[2], rm, "dave", opts("dave")...)
	bob = join(t, srvs[0], rm, "bob", opts("bob")...)
	seeEachOther(t, alice, dave, bob)
	return srvs, proxy, alice, dave, bob
}

// cutOff cuts n2 off the bus and waits until both sides see it; with
// purged, also until n0 has purged n2's members from the room state
// (the cut then outlasts the resume window).
func cutOff(t *testing.T, srvs []*server.Server, proxy *cutProxy, rm string, purged bool, stay []*client.Client) {
	t.Helper()
	proxy.setCut(true)
	eventually(t, 15*time.Second, "n0 and n2 each see the other gone", func() bool {
		return len(srvs[0].Cluster().Nodes()) == 2 && len(srvs[2].Cluster().Nodes()) == 1
	})
	if !purged {
		return
	}
	want := ids(stay...)
	eventually(t, 30*time.Second, "n0 purges n2's members from the room state", func() bool {
		got := srvs[0].Cluster().StateMembers(rm)
		slices.Sort(got)
		keys, err := srvs[0].Cluster().RoomKeys(rm)
		return slices.Equal(got, want) && err == nil && len(keys["member"]) == len(want) && len(keys["identity"]) == len(want)
	})
}

// heal restores n2's link and waits until every node lists three nodes.
func heal(t *testing.T, srvs []*server.Server, proxy *cutProxy) {
	t.Helper()
	proxy.setCut(false)
	eventually(t, 30*time.Second, "every node lists three nodes again", func() bool {
		for _, s := range srvs {
			if len(s.Cluster().Nodes()) != 3 {
				return false
			}
		}
		return true
	})
}

func ids(cs ...*client.Client) []string {
	out := make([]string, 0, len(cs))
	for _, c := range cs {
		out = append(out, c.ParticipantID())
	}
	slices.Sort(out)
	return out
}

// leaveReason is the reason of the `leave` a client was sent, "" if none.
func leaveReason(c *client.Client) string {
	for _, e := range c.Events() {
		if e.Method == protocol.MethodLeave {
			var l protocol.LeaveParams
			_ = json.Unmarshal(e.Params, &l)
			return l.Reason
		}
	}
	return "-" // no leave yet
}

// converged waits until the room holds exactly the members of in on every
// node — in the node's own part of the room if it has one (its
// participants and the other nodes'),
// in the room state as each node reads it, and as every one of them sees
// the others — and none of out is seen anywhere.
func converged(t *testing.T, srvs []*server.Server, rm string, in, out []*client.Client) {
	t.Helper()
	want := ids(in...)
	var last string
	ok := func() bool {
		for i, s := range srvs {
			local := want // a node without a part of the room goes by the state
			if r := s.Rooms().Room(rm); r != nil {
				local = nil
				for _, p := range r.Participants() {
					local = append(local, p.ID)
				}
				slices.Sort(local)
			}
			state := s.Cluster().StateMembers(rm)
			slices.Sort(state)
			if !slices.Equal(local, want) || !slices.Equal(state, want) {
				last = fmt.Sprintf("n%d: room %v, state %v, want %v", i, local, state, want)
				return false
			}
		}
		for _, c := range in {
			for _, o := range in {
				if c != o && !knows(c, o.ParticipantID()) {
					last = fmt.Sprintf("%s does not see %s", c.ParticipantID(), o.ParticipantID())
					return false
				}
			}
			for _, o := range out {
				if knows(c, o.ParticipantID()) {
					last = fmt.Sprintf("%s still sees %s", c.ParticipantID(), o.ParticipantID())
					return false
				}
			}
		}
		return true
	}
	for deadline := time.Now().Add(30 * time.Second); !ok(); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("after 30s, every node and every participant do not see the same members: %s", last)
		}
	}
	keys, err := srvs[1].Cluster().RoomKeys(rm)
	if err != nil {
		t.Fatal(err)
	}
	if len(keys["member"]) != len(want) {
		t.Fatalf("room keys %v: want %d members", keys, len(want))
	}
}

// wantKeys checks the numbers of a room's member, identity and slot keys.
func wantKeys(t *testing.T, srv *server.Server, rm string, members, identities, slots int) {
	t.Helper()
	keys, err := srv.Cluster().RoomKeys(rm)
	if err != nil || len(keys["member"]) != members || len(keys["identity"]) != identities || len(keys["slot"]) != slots {
		t.Fatalf("room keys %v (%v): want %d members, %d identities, %d slots", keys, err, members, identities, slots)
	}
}

// A room limited to four: alice and dave on n2, bob on n0. n2 is cut off
// for longer than the resume window, so n0 purges alice and dave from the
// room state; carol (n1) and erin (n0) join meanwhile, leaving one place.
// When the link is back, one of alice and dave takes that place and the
// other is ended with leave "roomFull": every node holds the same four,
// each with its slot (before, both were written back: five).
func TestBusCutWriteBackRespectsLimit(t *testing.T) {
	const rm = "wbfull"
	srvs, proxy, alice, dave, bob := cutRoom(t, rm, 1500*time.Millisecond, func(c *config.Config) { c.Limits.MaxParticipants = 4 }, nil)

	cutOff(t, srvs, proxy, rm, true, []*client.Client{bob})
	carol := join(t, srvs[1], rm, "carol")
	erin := join(t, srvs[0], rm, "erin")
	seeEachOther(t, bob, carol, erin)
	heal(t, srvs, proxy)

	var out, kept *client.Client
	eventually(t, 30*time.Second, "alice or dave is told to leave", func() bool {
		switch {
		case leaveReason(alice) != "-":
			out, kept = alice, dave
		case leaveReason(dave) != "-":
			out, kept = dave, alice
		}
		return out != nil
	})
	if r := leaveReason(out); r != protocol.ReasonRoomFull {
		t.Fatalf("leave reason %q, want %q", r, protocol.ReasonRoomFull)
	}
	in := []*client.Client{kept, bob, carol, erin}
	converged(t, srvs, rm, in, []*client.Client{out})
	wantKeys(t, srvs[0], rm, 4, 4, 4)
	if r := leaveReason(kept); r != "-" {
		t.Fatalf("the member written back in the free place was told to leave (%q)", r)
	}
}

// The identity of a member on n2 joins n1 while n2 is cut off: after a
// cut shorter than the resume window the join replaces it in the room
// state (the command that ends it on n2 is lost with the link); after a
// longer one n2's members were purged and the join simply takes the
// identity. Either way, when the link is back the older session is ended
// with leave "duplicate" and every node holds the same members (before,
// n2 wrote it back: two members with one identity).
func TestBusCutWriteBackDuplicate(t *testing.T) { writeBackDuplicate(t, 20*time.Second, false) }

func TestBusCutLongWriteBackDuplicate(t *testing.T) {
	writeBackDuplicate(t, 1500*time.Millisecond, true)
}

func writeBackDuplicate(t *testing.T, window time.Duration, outlast bool) {
	const rm = "wbdup"
	srvs, proxy, alice, dave, bob := cutRoom(t, rm, window, withKeys, func(name string) []func(*client.Options) {
		return []func(*client.Options){token(t, name, rm)}
	})

	cutOff(t, srvs, proxy, rm, outlast, []*client.Client{bob})
	alice2 := join(t, srvs[1], rm, "alice again", token(t, "alice", rm))
	seeEachOther(t, bob, alice2)
	heal(t, srvs, proxy)

	ev, err := alice.WaitEvent(ctxT(t, 30*time.Second), protocol.MethodLeave, nil)
	if err != nil {
		t.Fatalf("alice's older session (n2) got no leave: %v", err)
	}
	var leave protocol.LeaveParams
	_ = json.Unmarshal(ev.Params, &leave)
	if leave.Reason != protocol.ReasonDuplicate {
		t.Fatalf("leave reason %q, want %q", leave.Reason, protocol.ReasonDuplicate)
	}
	converged(t, srvs, rm, []*client.Client{alice2, dave, bob}, []*client.Client{alice})
	wantKeys(t, srvs[0], rm, 3, 3, 3)
	for _, c := range []*client.Client{alice2, dave, bob} {
		if r := leaveReason(c); r != "-" {
			t.Fatalf("%s was told to leave (%q)", c.ParticipantID(), r)
		}
	}
}

// A participant leaves a node while that node is cut off from the bus for
// longer than a change waits for the store (cluster.store_wait), but not for longer than
// the resume window (its members stay in the room state meanwhile): its
// member key could not be deleted then. When the link is back the node
// deletes it, so every node holds the same members, and the room closes
// once the others leave (before, the key stayed: the room kept a member
// nobody had and never closed).
func TestBusCutLeaveDuringCut(t *testing.T) {
	const rm = "wbleave"
	srvs, proxy, alice, dave, bob := cutRoom(t, rm, 30*time.Second, func(c *config.Config) { c.Limits.MaxParticipants = 4 }, nil)

	cutOff(t, srvs, proxy, rm, false, nil)
	if err := dave.Leave(ctxT(t, 10*time.Second)); err != nil {
		t.Fatalf("dave leaves n2 during the cut: %v", err)
	}
	eventually(t, 10*time.Second, "alice sees dave leave", func() bool { return !knows(alice, dave.ParticipantID()) })
	// The cut outlasts the time a change waits for the store
	// (busCutStoreWait): n2's deletion of dave's key gives up and is
	// remembered.
	eventually(t, 30*time.Second, "n2 gives up deleting dave's key", func() bool { return srvs[2].Cluster().PendingRemovals() > 0 })
	heal(t, srvs, proxy)
	converged(t, srvs, rm, []*client.Client{alice, bob}, []*client.Client{dave})
	wantKeys(t, srvs[0], rm, 2, 2, 2)
	for _, c := range []*client.Client{alice, bob} {
		if err := c.Leave(ctxT(t, 10*time.Second)); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, 30*time.Second, "the room closes once alice and bob have left", func() bool {
		_, open := srvs[1].Cluster().RoomSID(rm)
		return !open
	})
}

// A participant resumes on its own node while that node is cut off from
// the bus for longer than a change waits for the store: its new resume
// token's hash could not be recorded in the room state. When the link is
// back the node records it, so when that node then dies the participant
// resumes through another node (before, the state kept the old token's
// hash: the resume got 404 and the call ended).
func TestBusCutResumeTokenRecorded(t *testing.T) {
	const rm = "wbtoken"
	srvs, proxy := cutTest(t, 30*time.Second, nil)
	alice := join(t, srvs[2], rm, "alice", withNodes(srvs[0])) // n2 first, then n0
	bob := join(t, srvs[0], rm, "bob")
	seeEachOther(t, alice, bob)
	aID := alice.ParticipantID()
	before := srvs[0].Cluster().MemberToken(rm, aID)
	if before == "" {
		t.Fatal("the room state has no token for alice")
	}

	cutOff(t, srvs, proxy, rm, false, nil)
	alice.CloseSignaling()
	eventually(t, 15*time.Second, "alice resumes on n2", func() bool {
		return resumedCount(alice) == 1 && alice.URL() == srvs[2].SignalingURL()
	})
	// The cut outlasts the time a change waits for the store
	// (busCutStoreWait): n2's record of the new token gives up.
	eventually(t, 30*time.Second, "n2 gives up recording alice's new token", func() bool { return srvs[2].Cluster().TokenFailures() > 0 })
	if got := srvs[0].Cluster().MemberToken(rm, aID); got != before {
		t.Fatalf("the state's token for alice changed during the cut")
	}
	heal(t, srvs, proxy)
	eventually(t, 30*time.Second, "the state records alice's new token", func() bool {
		tok := srvs[0].Cluster().MemberToken(rm, aID)
		return tok != "" && tok != before
	})

	srvs[2].Abort()
	deadline := time.Now().Add(30 * time.Second)
	for resumedCount(alice) < 2 || alice.URL() != srvs[0].SignalingURL() {
		if time.Now().After(deadline) {
			t.Fatalf("alice did not resume through n0 after n2 died; her client: %s", trail(alice))
		}
		time.Sleep(50 * time.Millisecond)
	}
	if id := alice.LastJoin().Participant.ID; id != aID {
		t.Fatalf("alice came back as %s, want %s", id, aID)
	}
	if sawLeave(bob, aID) {
		t.Errorf("bob was told alice left")
	}
}
