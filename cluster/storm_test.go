package cluster_test

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/starling-rtc/starling/client"
	"github.com/starling-rtc/starling/config"
	"github.com/starling-rtc/starling/protocol"
	"github.com/starling-rtc/starling/server"
)

// A join storm: 60 clients (30 under -race) join one room at the same instant through three
// nodes. Exactly max_participants get in (the others are told the room is
// full), and every one of them sees every other one.
//
// Not parallel: the clients load the machine enough to slow the state store
// of the other tests' clusters (a join there waits at most 8 s for it), so
// the storm runs alone in the package.
func TestJoinStorm(t *testing.T) {
	srvs := startCluster(t, 3, func(c *config.Config) { c.Limits.MaxParticipants = stormLimit })
	joined, seen := joinStorm(t, srvs, "storm")
	t.Logf("%d joins over 3 nodes: all answered after %s, all seeing each other after %s", stormJoins, joined.Round(time.Millisecond), seen.Round(time.Millisecond))
}

// BenchmarkJoinStorm times the storm of TestJoinStorm (one per iteration,
// each in a new room), with the bus links as they are and with 50 ms added
// each way (TCP proxies): until every join is answered, and until every
// participant sees every other one.
//
//	go test -run '^$' -bench JoinStorm -benchtime 3x ./cluster/
func BenchmarkJoinStorm(b *testing.B) {
	for _, delay := range []time.Duration{0, 50 * time.Millisecond} {
		b.Run("bus+"+delay.String(), func(b *testing.B) {
			ports := freePorts(b, 3)
			tune := func(c *config.Config) { c.Limits.MaxParticipants = stormLimit }
			if delay > 0 {
				tune = slowBus(b, ports, delay, tune)
			}
			srvs := startNodes(b, ports, 3, tune)
			var answered, seen time.Duration
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				a, s := joinStorm(b, srvs, "storm"+itoa(i))
				answered += a
				seen += s
			}
			b.ReportMetric(answered.Seconds()/float64(b.N), "s-answered")
			b.ReportMetric(seen.Seconds()/float64(b.N), "s-all-see-all")
		})
	}
}

// joinStorm runs the storm into room and checks its outcome; it returns
// how long until every join was answered and until all saw each other.
func joinStorm(t testing.TB, srvs []*server.Server, room string) (answered, seen time.Duration) {
	t.Helper()
	api, err := client.LoopbackAPI()
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu     sync.Mutex
		in     []*client.Client
		full   int
		others []error
		wg     sync.WaitGroup
	)
	start := make(chan struct{})
	for i := 0; i < stormJoins; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			<-start
			ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
			defer cancel()
			c, err := client.Dial(ctx, srvs[i%3].SignalingURL(), room, client.Options{Name: "p" + itoa(i), API: api, LazyPublisher: true})
			mu.Lock()
			defer mu.Unlock()
			var perr *protocol.Error
			switch {
			case err == nil:
				in = append(in, c)
			case errors.As(err, &perr) && perr.Code == protocol.CodeTooLarge:
				full++
			default:
				others = append(others, err)
			}
		}(i)
	}
	began := time.Now()
	close(start)
	wg.Wait()
	answered = time.Since(began)
	defer func() {
		for _, c := range in {
			c.Close()
		}
	}()
	if len(others) > 0 {
		// Each distinct error with its count: a node that never answered
		// (the client's silence timeout) reads differently from one that
		// refused.
		byErr := map[string]int{}
		for _, err := range others {
			byErr[err.Error()]++
		}
		t.Fatalf("%d joins failed otherwise than room full (%d joined, %d told full, all answered after %s): %v",
			len(others), len(in), full, answered.Round(time.Millisecond), byErr)
	}
	if len(in) != stormLimit || full != stormJoins-stormLimit {
		// What the nodes hold: whose slot each participant has, and whether
		// a node took another for gone meanwhile (a stalled node's
		// members and slots are what a purge or take-back would free).
		ids := make([]string, 0, len(in))
		for _, c := range in {
			ids = append(ids, c.ParticipantID())
		}
		slices.Sort(ids)
		t.Logf("participants in: %v", ids)
		for _, s := range srvs {
			n := s.Cluster()
			var gone []string
			for _, o := range srvs {
				if id := o.Cluster().ID(); id != n.ID() && n.FoundGone(id) {
					gone = append(gone, id)
				}
			}
			local := 0
			if r := s.Rooms().Room(room); r != nil {
				local = len(r.LocalMembers())
			}
			members := n.StateMembers(room)
			slices.Sort(members)
			t.Logf("%s: %d local participants; %d state members %v; slots %v; found gone now %v, %d times in all; silent but alive %d",
				n.ID(), local, len(members), members, n.SlotsHeld(room), gone, n.TimesFoundGone(), n.SilentAlive())
		}
		t.Fatalf("%d joined and %d were told the room is full, want exactly %d and %d", len(in), full, stormLimit, stormJoins-stormLimit)
	}
	eventually(t, 60*time.Second, "each participant sees every other one", func() bool {
		for _, a := range in {
			for _, b := range in {
				if a != b && !knows(a, b.ParticipantID()) {
					return false
				}
			}
		}
		return true
	})
	return answered, time.Since(began)
}
