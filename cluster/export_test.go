package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/starling-rtc/starling/room"
)

// Crash stops the node as a SIGKILL would, as far as the others can tell:
// no goodbye, heartbeats stop, the embedded NATS server drops its routes,
// the relay socket closes. It is Abort, then waits until the embedded
// NATS server and the node's goroutines are done.
func (n *Node) Crash() {
	n.Abort()
	if n.bus.ns != nil {
		n.bus.ns.WaitForShutdown()
	}
	n.wg.Wait()
}

// StoreLeader is the node that leads the room-state bucket's stream (its
// server name is the node id), "" when none answers.
func (n *Node) StoreLeader() string {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := n.bus.js.Stream(ctx, "KV_"+roomsBucket)
	if err != nil {
		return ""
	}
	info, err := s.Info(ctx)
	if err != nil || info.Cluster == nil {
		return ""
	}
	return info.Cluster.Leader
}

// LandMove writes what a takeover through n leaves in the room state once
// its write landed: member id on n, holding tokenHash (the takeover's new
// token). The tests use it for a write whose confirmation was lost.
func (n *Node) LandMove(name, id, tokenHash string) error {
	v, err := n.readView(name)
	if err != nil {
		return err
	}
	p := roomKey(name)
	for key, m := range v.members {
		if m.ID != id {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), kvTimeout)
		defer cancel()
		if _, err := n.kvDelete(ctx, key, 0); err != nil {
			return err
		}
		m.Node, m.Token = n.id, tokenHash
		data, _ := json.Marshal(m)
		_, err := n.bus.kv.Put(ctx, memberKey(p, n.id, id), data)
		return err
	}
	return errors.New("no such member")
}

// LoseCloseAnswer makes the next room delete through n (CloseRoom) land
// its write in the store but see it time out, as when the answer is lost;
// meanwhile runs before the timeout is reported (nil: nothing).
func (n *Node) LoseCloseAnswer(meanwhile func()) { n.loseCloseAnswer.Store(&meanwhile) }

// NeverHear makes every node of this process drop the heartbeats of node
// id, as when a node is killed before its first heartbeat reached anyone.
func NeverHear(id string) { ignoredHeartbeats.Store(id, true) }

// MissHeartbeats makes n drop node id's heartbeats (miss) or hear them
// again, as when id's heartbeats stop arriving here while it lives: a
// stall of its process, or of this one.
func (n *Node) MissHeartbeats(id string, miss bool) {
	if miss {
		n.deaf.Store(id, true)
	} else {
		n.deaf.Delete(id)
	}
}

// SetStaleSlot makes n take back a slot held by no member once it is
// older than d, instead of staleSlot.
func (n *Node) SetStaleSlot(d time.Duration) { n.slotHooks.stale.Store(int64(d)) }

// OnRoomEvent makes n run f on each room event from another node before
// applying it, on the room's subscription goroutine: f may hold the
// events back (nil: no more).
func (n *Node) OnRoomEvent(f func(room string, ev room.Event)) {
	if f == nil {
		n.eventHook.Store(nil)
		return
	}
	n.eventHook.Store(&f)
}

// AskSnapshot makes n ask node for its part of room and apply it now, as
// on a resync.
func (n *Node) AskSnapshot(name, node string) {
	if r := n.rooms.Room(name); r != nil {
		n.requestSnapshot(r, node)
	}
}

// SilentAlive counts the times n found a node whose heartbeats stopped
// arriving alive all the same (it answered a ping).
func (n *Node) SilentAlive() int64 { return n.silentAlive.Load() }

// NodeKnown reports whether n knows node id from its key (nodekeys.go).
func (n *Node) NodeKnown(id string) bool { return n.nodeRunOf(id).StartedAt != 0 }

// RoomKeys lists a room's keys in the room state bucket by kind ("room",
// "member", "identity", "slot") with their revisions.
func (n *Node) RoomKeys(name string) (map[string][]uint64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), kvTimeout)
	defer cancel()
	p := roomKey(name)
	revs := map[string]uint64{} // key -> revision, present keys only
	err := n.readKeys(ctx, []string{p, p + ".>"}, func(e jetstream.KeyValueEntry) {
		if e.Operation() == jetstream.KeyValuePut {
			revs[e.Key()] = e.Revision()
		} else {
			delete(revs, e.Key())
		}
	})
	if err != nil {
		return nil, err
	}
	out := map[string][]uint64{}
	kinds := map[string]string{"m": "member", "i": "identity", "s": "slot"}
	for key, rev := range revs {
		kind := "room"
		if rest, ok := strings.CutPrefix(key, p+"."); ok {
			kind = kinds[rest[:1]]
		}
		out[kind] = append(out[kind], rev)
	}
	for _, r := range out {
		slices.Sort(r)
	}
	return out, nil
}

// LastChange is the newest stream sequence among a room's keys, as a
// watch's safety check reads it.
func (n *Node) LastChange(name string) uint64 { return n.lastChange(roomKey(name)) }

// ClaimIdentity claims identity for member id (on n) in room as a join's
// retry does; it returns the id of the member the claim replaced.
func (n *Node) ClaimIdentity(name, id, identity string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), kvTimeout)
	defer cancel()
	h, err := n.claimIdentity(ctx, roomKey(name), room.Member{ID: id, Identity: identity, Node: n.id})
	return h.ID, err
}

// StateMembers lists the ids of a room's members as this node reads them
// from the room state (what a node without a part of the room goes by).
func (n *Node) StateMembers(name string) []string {
	st, ok := n.get(name)
	if !ok {
		return nil
	}
	ids := make([]string, 0, len(st.Members))
	for _, m := range st.Members {
		ids = append(ids, m.ID)
	}
	return ids
}

// MemberToken is the resume token hash the room state records for member
// id, as this node reads the state ("" when it has no such member).
func (n *Node) MemberToken(name, id string) string {
	st, _ := n.get(name)
	for _, m := range st.Members {
		if m.ID == id {
			return m.Token
		}
	}
	return ""
}

// RequestSnapshot asks node for its part of the room name and applies it
// here, as a resync after a gap in its events does.
func (n *Node) RequestSnapshot(name, node string) {
	if r := n.rooms.Room(name); r != nil {
		n.requestSnapshot(r, node)
	}
}

// StoreReplicated reports whether the room-state stream is configured
// with want replicas and has a leader and every follower current: the
// store then survives the loss of any one node (a stream made with fewer
// replicas, as a node does when its peers' JetStream is late, is raised
// by the heartbeat only every few seconds, and one of two lost leaves no
// quorum at all).
func (n *Node) StoreReplicated(want int) (bool, string) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := n.bus.js.Stream(ctx, "KV_"+roomsBucket)
	if err != nil {
		return false, err.Error()
	}
	info, err := s.Info(ctx)
	if err != nil {
		return false, err.Error()
	}
	if info.Config.Replicas < want {
		return false, fmt.Sprintf("%d replicas", info.Config.Replicas)
	}
	return n.bus.replicasCurrent(ctx)
}

// PendingRemovals is how many member keys this node failed to delete and
// will try again (removals.go).
func (n *Node) PendingRemovals() int {
	n.unremoved.mu.Lock()
	defer n.unremoved.mu.Unlock()
	return len(n.unremoved.keys)
}

// TokenFailures is how many resume token hashes SetToken gave up on.
func (n *Node) TokenFailures() int64 { return n.tokenFailures.Load() }

// HooksIdle: no webhook claim is queued or in progress (hookonce.go).
func (n *Node) HooksIdle() bool {
	n.hooks.mu.Lock()
	defer n.hooks.mu.Unlock()
	return !n.hooks.running
}

// SweepClaimsAt sweeps the webhook claim keys as if it were now
// (hooksweep.go), whatever the bucket allows.
func (n *Node) SweepClaimsAt(now time.Time) { n.sweepClaims(now) }

// ClaimTTL is how long a webhook claim key lives.
const ClaimTTL = claimTTL

// MemberEntry is the JSON of participant id's member key in a room, as
// the store's leader has it ("" for none).
func (n *Node) MemberEntry(name, id string) string {
	v, err := n.readView(name)
	if err != nil {
		return ""
	}
	for _, m := range v.members {
		if m.ID == id {
			data, _ := json.Marshal(m)
			return string(data)
		}
	}
	return ""
}

// StoredMix is a room's mix settings as the store has them (nil: none).
func (n *Node) StoredMix(name string) (map[string]MixSetting, error) {
	ctx, cancel := context.WithTimeout(context.Background(), kvTimeout)
	defer cancel()
	var p mixPrefs
	if _, err := n.getJSON(ctx, mixKey(name), &p); err != nil {
		return nil, err
	}
	return p.Prefs, nil
}

// ClaimStored says what the stream holds for the claim key of event and
// id: "claim", "marker" (a deletion marker) or "" (nothing).
func (n *Node) ClaimStored(event, id string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), kvTimeout)
	defer cancel()
	m, err := n.leaderGet(ctx, "$KV."+roomsBucket+"."+claimKey(event, id))
	switch {
	case err != nil || m == nil:
		return "", err
	case m.deleted():
		return "marker", nil
	}
	return "claim", nil
}

// StoredTracks lists the ids of the tracks the room state keeps for node
// (trackkeys.go).
func (n *Node) StoredTracks(node string) []string {
	ctx, cancel := context.WithTimeout(context.Background(), kvTimeout)
	defer cancel()
	lister, err := n.bus.kv.ListKeysFiltered(ctx, "t."+enc(node)+".*")
	if err != nil {
		return nil
	}
	var out []string
	for k := range lister.Keys() {
		var st storedTrack
		if rev, err := n.getJSON(ctx, k, &st); err == nil && rev != 0 {
			out = append(out, st.Track.ID)
		}
	}
	return out
}

// TestParallel is how many of the package's parallel tests run at once
// (sched_test.go), set by TestMain: defaultParallel, GOMAXPROCS if more,
// or -test.parallel when given.
var TestParallel int

// OnSlotClaimed runs f in n's next joins, once each has claimed its slot
// and before it writes its member (a node that dies there: f aborts it).
func (n *Node) OnSlotClaimed(f func()) { n.slotClaimed.Store(&f) }

// SkipProofRequests makes the node leave the next k secret proof requests
// unanswered, as a starved node answers them late.
func (n *Node) SkipProofRequests(k int) { n.skipProofs.Store(int32(k)) }

// SlotsHeld is the slots of a room as n's watch of it shows them (nil
// without a watch), by slot, the holder's member id.
func (n *Node) SlotsHeld(name string) map[int]string {
	w := n.rs.watch(name)
	if w == nil {
		return nil
	}
	return w.slotsTaken()
}

// ClaimIdentityWrites is ClaimIdentity, and how many writes the claim
// made.
func (n *Node) ClaimIdentityWrites(name, id, identity string) (prev string, writes int, err error) {
	// A join's claim has the store wait (retry); the test counts writes,
	// not time, and a loaded -race run took over kvTimeout for one.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	h, writes, err := n.claimIdentityTries(ctx, roomKey(name), room.Member{ID: id, Identity: identity, Node: n.id})
	return h.ID, writes, err
}

// LoseClaimAnswer makes n's next webhook claim (Once) land its write in
// the store but see it time out, as when the answer is lost.
func (n *Node) LoseClaimAnswer() { n.loseClaimAnswer.Store(true) }

// HoldCloses makes n keep its parts of rooms the admin deleted open (the
// close command and the watch's close wait) until release is called.
func (n *Node) HoldCloses() (release func()) {
	ch := make(chan struct{})
	n.holdCloses.Store(&ch)
	var once sync.Once
	return func() { once.Do(func() { n.holdCloses.Store(nil); close(ch) }) }
}

// IdentitiesHeld is how many identity keys of a room n's watch shows (-1
// without a watch).
func (n *Node) IdentitiesHeld(name string) int {
	w := n.rs.watch(name)
	if w == nil {
		return -1
	}
	v, ok := w.copyView()
	if !ok {
		return -1
	}
	return len(v.holders)
}

// LoseMoveWrite makes n's next takeover fail to write the moved member
// after its delete of the old key landed, as when the store's leader dies
// between the two.
func (n *Node) LoseMoveWrite() { n.loseMoveWrite.Store(true) }

// EndMoveAtDelete: the next takeover through n answers 503 right after its
// delete of the member's old key landed, before its write (its time ran
// out there).
func (n *Node) EndMoveAtDelete() { n.endMoveAtDelete.Store(true) }

// LeadsMeta reports whether n's embedded NATS server leads the JetStream
// meta layer (stream and consumer placement, their creation).
func (n *Node) LeadsMeta() bool { return n.bus.ns != nil && n.bus.ns.JetStreamIsLeader() }

// FoundGone reports whether n found node id gone (and has not heard it
// since).
func (n *Node) FoundGone(id string) bool { _, ok := n.lost.Load(id); return ok }

// TimesFoundGone counts the times n found another node gone, whether or
// not it heard it again since.
func (n *Node) TimesFoundGone() int64 { return n.foundGone.Load() }

// Unhear makes n forget it heard node id and drop its heartbeats from
// now on, as if they had never reached it.
func (n *Node) Unhear(id string) {
	n.MissHeartbeats(id, true)
	n.reg.forget(id)
}

// LoseNodeKey makes each node of this process drop the first delivery of
// node id's key by its watch of the node keys, as when the watch's
// consumer lived on a node that died before it delivered the key.
func LoseNodeKey(id string) { lostNodeKeys.LoadOrStore(nodeKey(id), &sync.Map{}) }

// HideNodeKey makes n's watch of the node keys drop every delivery of
// node id's key (hide), starting again so that n no longer knows it, or
// deliver them again, as a watch whose consumer lived on a node that died
// delivers nothing until it is recreated.
func (n *Node) HideNodeKey(id string, hide bool) {
	if hide {
		n.hiddenKeys.Store(nodeKey(id), true)
		n.restartNodeKeys()
	} else {
		n.hiddenKeys.Delete(nodeKey(id))
	}
}

// CheckIdentityLater schedules the identity check a join with an identity
// schedules (identitycheck.go): work started through spawn.
func (n *Node) CheckIdentityLater(name string) { n.checkIdentityLater(name, "") }

// OnIdentityChecked runs f after each pass of n's identity checks
// (identitycheck.go), with whether the joined participant was local.
func (n *Node) OnIdentityChecked(f func(local bool)) { n.identityChecked.Store(&f) }

// OnJoinReturns runs f in n's joins before Join returns: the participant
// is admitted to the local room only after f.
func (n *Node) OnJoinReturns(f func()) { n.joinReturns.Store(&f) }

// OnPlaces runs f for each place n's joins take in a room (a Join that
// succeeded: held) and give up (a Leave: not held). A Leave's call comes
// before its slot is released, a Join's after its slot was claimed, so
// the places held across the nodes at any moment are at least the room's
// members then: a room whose count goes past its limit was over-admitted.
func (n *Node) OnPlaces(f func(room, id string, held bool)) { n.places.Store(&f) }

// ForgetBucketMade makes n forget when the room state bucket's stream was
// made, as when the store did not answer in time at n's start.
func (n *Node) ForgetBucketMade() {
	n.bus.smu.Lock()
	n.bus.made = time.Time{}
	n.bus.smu.Unlock()
}

// CheckBucket runs n's check that the room state bucket is the one it
// opened (bucketlost.go), now; false when JetStream did not say.
func (n *Node) CheckBucket() bool { return n.checkBucket() }

// BucketRewrites counts the times n found the bucket made again and wrote
// its part of the room state back.
func (n *Node) BucketRewrites() int64 { return n.bucketRewrites.Load() }

// Stopping is closed once the node's Close or Abort has begun.
func (n *Node) Stopping() <-chan struct{} { return n.stop }

// MovesHeld counts the remote participants n kept, absent from the room
// state past confirmAfter, because another node said it moves them
// (moving.go).
func (n *Node) MovesHeld() int64 { return n.movesHeld.Load() }
