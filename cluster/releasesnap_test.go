package cluster_test

import (
	"crypto/sha256"
	"encoding/hex"
	"testing"
	"time"

	"github.com/starling-rtc/starling/room"
)

// A participant its node released to another node it resumes through is
// not gone: a snapshot of its old node taken after the release (it no
// longer lists it) and applied on another node before the takeover there
// wrote the member and retired the stub told that node's participants it
// had left (TestClusterSIGTERMDrains: b, resumed through d1 a moment
// before a, was told `participantLeft a`). The stub stays until the new
// node has it; the resume then goes on unseen.
func TestReleasedParticipantNotLeftBySnapshot(t *testing.T) {
	parallel(t)
	srvs := failoverCluster(t)
	alice := join(t, srvs[0], "relsnap", "alice")
	bob := join(t, srvs[1], "relsnap", "bob")
	seeEachOther(t, alice, bob)
	aID, n0 := alice.ParticipantID(), srvs[0].Cluster().ID()
	sum := sha256.Sum256([]byte(alice.ResumeToken()))
	hash := hex.EncodeToString(sum[:])

	// alice's socket drops (no resume by itself); n0 lets her go once it
	// has seen the drop, as it does when another node asks (handoff).
	alice.CloseSignaling()
	eventually(t, 20*time.Second, "n0 releases alice", func() bool {
		return srvs[0].Rooms().Release("relsnap", aID, hash) == room.Released
	})
	if r := srvs[0].Rooms().Room("relsnap"); r != nil && r.Snapshot().Participants != nil {
		for _, p := range r.Snapshot().Participants {
			if p.Info.ID == aID {
				t.Fatal("n0's snapshot still lists alice after her release")
			}
		}
	}
	// n1 resyncs with n0 before any node took alice over.
	srvs[1].Cluster().RequestSnapshot("relsnap", n0)
	r1 := srvs[1].Rooms().Room("relsnap")
	if r1 == nil {
		t.Fatal("n1 has no part of the room")
	}
	if node := r1.RemoteMembers()[aID]; node != n0 {
		t.Fatalf("after n0's snapshot, n1 has alice on %q, want her kept on %s until her new node has her", node, n0)
	}

	// Her resume through n1 finds the release and moves her there.
	if err := storeResume(t, srvs[1], "relsnap", alice.ResumeToken()); err != nil {
		t.Fatalf("alice's resume through n1: %v", err)
	}
	eventually(t, 10*time.Second, "alice is n1's own participant", func() bool {
		_, remote := r1.RemoteMembers()[aID]
		return !remote && r1.Participant(aID) != nil
	})
	if sawLeave(bob, aID) {
		t.Fatal("bob was told alice left")
	}
}
