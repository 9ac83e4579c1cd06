package cluster_test

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/starling-rtc/starling/client"
	"github.com/starling-rtc/starling/config"
	"github.com/starling-rtc/starling/internal/testutil"
	"github.com/starling-rtc/starling/protocol"
)

// One key per member: joins on three nodes into a room limited to two
// write their own member, identity and slot keys and never the room's
// key; a join with the identity of a member on another node replaces it
// even in the full room (in its slot), and a retry of that claim still
// knows whom it replaced; another identity is refused; a leave removes
// the leaver's keys.
func TestRoomStatePerMemberKeys(t *testing.T) {
	parallel(t)
	srvs := startCluster(t, 3, func(c *config.Config) { withKeys(c); c.Limits.MaxParticipants = 2 })
	const room = "keys"
	keysOf := func() map[string][]uint64 {
		t.Helper()
		k, err := srvs[2].Cluster().RoomKeys(room)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	watcher := join(t, srvs[2], room, "watcher", token(t, "watcher", room))
	roomRev := keysOf()["room"]
	first := join(t, srvs[0], room, "first", token(t, "carol", room))
	seeEachOther(t, watcher, first)

	second := join(t, srvs[1], room, "second", token(t, "carol", room)) // the room is full: carol's place
	if reason := testutil.LeaveReason(t, first, "first session (n0)"); reason != protocol.ReasonDuplicate {
		t.Fatalf("leave reason %q, want %q", reason, protocol.ReasonDuplicate)
	}
	seeEachOther(t, watcher, second)
	// A retry of second's identity claim (its first write landed, its
	// answer lost) still names the member it replaced.
	if replaced, err := srvs[1].Cluster().ClaimIdentity(room, second.ParticipantID(), "carol"); err != nil || replaced != first.ParticipantID() {
		t.Fatalf("a retried identity claim replaced %q (%v), want the first session %q", replaced, err, first.ParticipantID())
	}

	api, _ := client.LoopbackAPI()
	o := client.Options{Name: "dave", API: api}
	token(t, "dave", room)(&o)
	_, err := client.Dial(ctxT(t, 15*time.Second), srvs[0].SignalingURL(), room, o)
	var perr *protocol.Error
	if !errors.As(err, &perr) || perr.Code != protocol.CodeTooLarge {
		t.Fatalf("a third identity on n0: %v, want error %d (room full)", err, protocol.CodeTooLarge)
	}

	want := func(members, identities, slots int) func() bool {
		return func() bool {
			k := keysOf()
			t.Logf("keys: %v", k)
			return len(k["member"]) == members && len(k["identity"]) == identities && len(k["slot"]) == slots
		}
	}
	eventually(t, 10*time.Second, "two members, identities and slots in the state", want(2, 2, 2))
	if got := keysOf()["room"]; fmt.Sprint(got) != fmt.Sprint(roomRev) {
		t.Fatalf("the room's key went from revision %v to %v: joins rewrote it", roomRev, got)
	}
	second.Close()
	eventually(t, 10*time.Second, "the leaver's keys are gone", want(1, 1, 1))

	// A watch's safety check reads the newest change of the room's keys:
	// here the deletion of the leaver's keys, newer than every key left.
	var newest uint64
	for _, revs := range keysOf() {
		for _, r := range revs {
			newest = max(newest, r)
		}
	}
	if got := srvs[1].Cluster().LastChange(room); got <= newest {
		t.Fatalf("newest change of the room's keys: %d, want a deletion after revision %d", got, newest)
	}
}
