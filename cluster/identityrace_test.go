package cluster_test

import (
	"sync"
	"testing"
)

// Two nodes claim the same identity for two members at once (two joins
// of one identity), again and again: one creates the identity key, the
// other replaces it and learns whom it replaced, in two writes (its
// refused create, then its compare-and-set over the winner). nats-server
// refuses a write to a key whose last write is still in flight (10164)
// before its leader stores that write, so the loser's read right after
// the refusal could still find no holder: it created the key again at
// once, refused again while the write was in flight, up to a hundred
// times before giving up ("too much contention on an identity": the join
// answered 503). The claims now read the leader once it holds the write
// they lost to (cluster/conflict.go), as the recording claim does
// (TestClaimLoserReadsTheWinner).
func TestIdentityLoserReadsTheWinner(t *testing.T) {
	parallel(t)
	srvs := startCluster(t, 3, nil)
	const rounds = 200
	again := 0
	for i := 0; i < rounds; i++ {
		room, ids := "id-race-"+itoa(i), [2]string{"PA_a" + itoa(i), "PA_b" + itoa(i)}
		type result struct {
			prev   string
			writes int
			err    error
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
				r.prev, r.writes, r.err = srvs[j].Cluster().ClaimIdentityWrites(room, ids[j], "carol")
			}()
		}
		close(start)
		wg.Wait()
		for j, r := range res {
			if r.err != nil {
				t.Fatalf("round %d: n%d's claim: %v", i, j, r.err)
			}
		}
		first, second := 0, 1
		if res[0].prev != "" {
			first, second = 1, 0
		}
		if res[first].prev != "" || res[second].prev != ids[first] {
			t.Fatalf("round %d: n%d replaced %q, n%d replaced %q; want one to create it and the other to replace it",
				i, first, res[first].prev, second, res[second].prev)
		}
		switch w := res[second].writes; {
		case w > 3:
			t.Errorf("round %d: the second claim made %d writes, want 2 (a refused create, then the replacement)", i, w)
		case w == 3:
			again++
		}
	}
	// One third write in the rounds is let pass: under -race on a loaded
	// machine one round in 200 took it once (a write in flight applied
	// after conflictSettle, or one refused at its application). Before
	// the fix 4 rounds of 200 did, one of them with 18 writes.
	if again > 1 {
		t.Errorf("%d of %d second claims wrote a third time, want at most one", again, rounds)
	}
}
