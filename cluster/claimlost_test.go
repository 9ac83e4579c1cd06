package cluster_test

import (
	"testing"
	"time"

	"github.com/starling-rtc/starling/cluster"
)

// A webhook claim whose write landed while its answer was lost (a
// timeout): the next try finds the key taken, and must recognise the claim
// as its own and send the webhook. It took it for another node's, and
// nobody sent it.
func TestClaimAnswerLostStillSent(t *testing.T) {
	parallel(t)
	srvs := startCluster(t, 3, nil)
	n := srvs[0].Cluster()
	n.LoseClaimAnswer()
	sent := make(chan struct{}, 2)
	n.Once(cluster.OnceParticipantLeft, "PA_claim-lost", func() { sent <- struct{}{} })
	// The claim is made: its key is stored. Then the webhook is sent, by
	// this node (the only one claiming), within its next try.
	eventually(t, 20*time.Second, "the claim is stored", func() bool {
		got, _ := n.ClaimStored(cluster.OnceParticipantLeft, "PA_claim-lost")
		return got == "claim"
	})
	n.Once("", "", func() { sent <- struct{}{} }) // unclaimed: runs after the claim above is settled
	select {
	case <-sent:
	case <-ctxT(t, 20*time.Second).Done():
		t.Fatal("nothing sent")
	}
	select {
	case <-sent:
	case <-ctxT(t, 20*time.Second).Done():
		t.Fatal("only one of the two sent")
	}
	if len(sent) != 0 {
		t.Fatal("sent more than once")
	}
}
