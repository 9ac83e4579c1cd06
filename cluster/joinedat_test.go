package cluster_test

import (
	"testing"
	"time"

	"github.com/starling-rtc/starling/protocol"
)

// TestTakeoverKeepsJoinedAt: a participant whose node dies resumes through
// another node with its joinedAt, as a resume on its own node does.
// PROTOCOL.md: "The participant id and its place in the room stay". The
// node that took it over made it anew and stamped joinedAt with the
// resume's time (an outsider saw alice's joinedAt jump in the resume
// result and in GET /v1/rooms/{room}, and a later joiner was listed her
// after bob, who joined after her: the lists are sorted by joinedAt).
func TestTakeoverKeepsJoinedAt(t *testing.T) {
	parallel(t)
	srvs := failoverCluster(t)
	alice := join(t, srvs[0], "joined-at", "alice", withNodes(srvs[1]))
	bob := join(t, srvs[1], "joined-at", "bob")
	seeEachOther(t, alice, bob)
	first := alice.LastJoin().Participant
	if bj := bob.LastJoin().Participant.JoinedAt; bj <= first.JoinedAt {
		t.Fatalf("bob's joinedAt %d is not after alice's %d", bj, first.JoinedAt)
	}

	srvs[0].Abort()
	eventually(t, 20*time.Second, "alice resumes through n1", func() bool {
		return resumedCount(alice) > 0 && alice.URL() == srvs[1].SignalingURL()
	})
	res := alice.LastJoin()
	if res.Participant.ID != first.ID || !res.NewConnections {
		t.Fatalf("alice came back as %+v (newConnections %v), want %s with new connections", res.Participant, res.NewConnections, first.ID)
	}
	if res.Participant.JoinedAt != first.JoinedAt {
		t.Errorf("alice's resume result says joinedAt %d, she joined at %d", res.Participant.JoinedAt, first.JoinedAt)
	}
	// A newcomer on the third node lists her as she joined: first, at her
	// time.
	carol := join(t, srvs[2], "joined-at", "carol")
	others := carol.LastJoin().Participants
	if len(others) != 2 || others[0].ID != first.ID || others[0].JoinedAt != first.JoinedAt {
		t.Errorf("carol's join lists %s, want alice (joinedAt %d) first, then bob", summary(others), first.JoinedAt)
	}
	if p := srvs[1].Rooms().Room("joined-at").Participant(first.ID); p == nil {
		t.Errorf("n1 does not have alice")
	} else if got := p.Info().JoinedAt; got != first.JoinedAt {
		t.Errorf("n1 (GET /v1/rooms/{room}) has alice's joinedAt %d, want %d", got, first.JoinedAt)
	}
}

func summary(ps []protocol.Participant) []string {
	var out []string
	for _, p := range ps {
		out = append(out, p.Name+"@"+time.UnixMilli(p.JoinedAt).Format("15:04:05.000"))
	}
	return out
}
