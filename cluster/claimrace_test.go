package cluster_test

import (
	"bytes"
	"sync"
	"testing"
)

// Two nodes create the same room's recording claim at once, again and
// again: the loser is told the winner's claim, never "none". nats-server
// refuses a compare-and-set on a key whose last write is still in flight
// (proposed, not yet applied: error 10164) before its leader stores that
// write, so the leader's value read right after the refusal could still be
// the one before it. Under load the start that lost read "none" twenty
// times in a row and answered 409 without the recording that holds the
// room (TestRecordingSimultaneousStarts, "the claim keeps changing").
func TestClaimLoserReadsTheWinner(t *testing.T) {
	parallel(t)
	srvs := startCluster(t, 3, nil)
	const rounds = 100
	inFlight := 0
	for i := 0; i < rounds; i++ {
		room := "claim-race-" + itoa(i)
		values := [2][]byte{[]byte(`{"id":"a` + itoa(i) + `"}`), []byte(`{"id":"b` + itoa(i) + `"}`)}
		type result struct {
			cur []byte
			rev uint64
			won bool
			err error
		}
		var res [2]result
		var wg sync.WaitGroup
		start := make(chan struct{})
		for j := range res {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				r := &res[j]
				r.cur, r.rev, r.won, r.err = srvs[j].Cluster().ClaimRecording(room, values[j], 0)
			}()
		}
		close(start)
		wg.Wait()
		for j, r := range res {
			if r.err != nil {
				t.Fatalf("round %d: n%d's claim: %v", i, j, r.err)
			}
		}
		if res[0].won == res[1].won {
			t.Fatalf("round %d: won %v and %v, want one winner", i, res[0].won, res[1].won)
		}
		win, lose := 0, 1
		if res[1].won {
			win, lose = 1, 0
		}
		if res[lose].rev != res[win].rev || !bytes.Equal(res[lose].cur, values[win]) {
			if res[lose].rev == 0 {
				inFlight++
			}
			t.Errorf("round %d: the loser n%d read %q at revision %d, want the winner's %q at %d",
				i, lose, res[lose].cur, res[lose].rev, values[win], res[win].rev)
		}
	}
	if inFlight > 0 {
		t.Logf("%d of %d losers read no claim", inFlight, rounds)
	}
}
