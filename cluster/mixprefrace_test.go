package cluster_test

import (
	"sync"
	"testing"
	"time"
)

// Many settings of one room's audio mix at once through three nodes: each
// is a compare-and-set of the room's one settings key, and each must be
// taken (none answered 503), the last of each participant stored. A
// setting that lost read the key again from a replica (or the leader at
// once), which could still hold what its refused write was based on
// (nats-server refuses a write whose subject has one in flight before it
// stores that one), wrote again at the same revision, refused again, and
// after a hundred tries answered "cluster mix settings keep changing".
func TestMixSettingsAtOnce(t *testing.T) {
	parallel(t)
	srvs := startCluster(t, 3, nil)
	const room = "mix-race"
	cs := [3]string{}
	for i, s := range srvs {
		cs[i] = join(t, s, room, "p"+itoa(i)).ParticipantID()
	}
	for _, s := range srvs {
		for _, id := range cs {
			eventually(t, 20*time.Second, "every node knows every member", func() bool {
				for _, m := range s.Cluster().StateMembers(room) {
					if m == id {
						return true
					}
				}
				return false
			})
		}
	}
	const each = 20 // settings per node and participant
	var wg sync.WaitGroup
	errs := make(chan error, 3*3*each)
	start := make(chan struct{})
	for i, s := range srvs {
		for j, id := range cs {
			for k := 0; k < each; k++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					<-start
					g := float64(i*3+j) / 10
					if _, err := s.Cluster().SetMixPref(room, id, &g, nil); err != nil {
						errs <- err
					}
				}()
			}
		}
	}
	close(start)
	wg.Wait()
	close(errs)
	n := 0
	for err := range errs {
		if n++; n <= 5 {
			t.Errorf("a mix setting: %v", err)
		}
	}
	if n > 0 {
		t.Errorf("%d of %d settings refused", n, 3*3*each)
	}
}
