package cluster_test

import (
	"context"
	"errors"
	"maps"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/starling-rtc/starling/client"
	"github.com/starling-rtc/starling/config"
	"github.com/starling-rtc/starling/protocol"
	"github.com/starling-rtc/starling/room"
	"github.com/starling-rtc/starling/server"
)

// A join storm: 60 clients (30 under -race) join one room at the same instant through three
// nodes. The room never holds more than max_participants (counted from the
// nodes' own admissions and leaves, placeCount); exactly max_participants
// get in (the others are told the room is full), and every one of them
// sees every other one.
//
// On a starved machine (-race beside busy loops, load 25-50) a node may end
// a participant it admitted during the storm (its subscriber offer
// unanswered for the negotiation timeout, its socket's writes timing out),
// and a join answered 503 that tries again takes its place: more than the
// limit then got in over the storm, one after the other, without the room
// ever holding more. Twice such a run read as an over-admission ("24 joined
// and 6 were told the room is full", sessions 20 and 23). Those ended
// participants are listed and left out of the counts and of the "sees
// every other" check; the limit itself is checked at every moment.
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
	places := watchPlaces(t, srvs, room)
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
	defer func(all []*client.Client) {
		for _, c := range all {
			c.Close()
		}
	}(in)
	most, ended := places.result()
	if most > stormLimit {
		listStorm(t, srvs, room, in, ended)
		t.Fatalf("the room held %d participants at once, its limit is %d (%d joined over the storm, %d told full)", most, stormLimit, len(in), full)
	}
	if len(others) > 0 {
		// Each distinct error with its count: a node that never answered
		// (the client's silence timeout) reads differently from one that
		// refused.
		byErr := map[string]int{}
		for _, err := range others {
			byErr[err.Error()]++
		}
		t.Fatalf("%d joins failed otherwise than room full (%d joined, %d told full, at most %d in the room at once, %d ended by their node meanwhile, all answered after %s): %v",
			len(others), len(in), full, most, len(ended), answered.Round(time.Millisecond), byErr)
	}
	if len(ended) > 0 {
		// Not an over-admission (most is within the limit): the
		// starved machine ended them, and others took their places.
		t.Logf("%d participants were ended by their node during the storm, %d joined in all, at most %d at once: %v", len(ended), len(in), most, ended)
		still := in[:0:0]
		for _, c := range in {
			if _, gone := ended[c.ParticipantID()]; !gone {
				still = append(still, c)
			}
		}
		in = still
	}
	if len(in) > stormLimit || (len(ended) == 0 && (len(in) != stormLimit || full != stormJoins-stormLimit)) {
		listStorm(t, srvs, room, in, ended)
		t.Fatalf("%d joined and %d were told the room is full, want exactly %d and %d (%d ended by their node during the storm, at most %d in the room at once)",
			len(in), full, stormLimit, stormJoins-stormLimit, len(ended), most)
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
	t.Logf("at most %d participants in the room at once, %d ended by their node during the storm", most, len(ended))
	return answered, time.Since(began)
}

// placeCount counts the places a room's participants hold across the
// nodes of a storm, from each node's own word (cluster.Node.OnPlaces): a
// join's place counts from when the cluster admitted it until its node
// lets it go, so the count never falls below the room's members at that
// moment. A purge of a live node's members, or a slot freed under a member
// still in the room, leaves the count up while a join takes the freed
// slot: the room then holds more than its limit, and most says so.
type placeCount struct {
	room  string
	mu    sync.Mutex
	held  map[string]bool
	most  int
	ended map[string]string // participant id -> why its node ended it
}

// watchPlaces starts counting room's places on every node of srvs, until
// t ends.
func watchPlaces(t testing.TB, srvs []*server.Server, room string) *placeCount {
	pc := &placeCount{room: room, held: map[string]bool{}, ended: map[string]string{}}
	for _, s := range srvs {
		s.Cluster().OnPlaces(pc.place)
		t.Cleanup(s.Rooms().AddObserver(pc))
	}
	return pc
}

func (pc *placeCount) place(name, id string, held bool) {
	if name != pc.room {
		return
	}
	pc.mu.Lock()
	defer pc.mu.Unlock()
	if !held {
		delete(pc.held, id)
		return
	}
	pc.held[id] = true
	pc.most = max(pc.most, len(pc.held))
}

// result is the most places held at once, and the participants their
// nodes ended so far, with the reason.
func (pc *placeCount) result() (int, map[string]string) {
	pc.mu.Lock()
	defer pc.mu.Unlock()
	return pc.most, maps.Clone(pc.ended)
}

// ParticipantLeft (room.LifecycleObserver) notes a participant its node
// ended: the test's clients do not leave during the storm.
func (pc *placeCount) ParticipantLeft(p room.ParticipantEvent, reason string) {
	if p.Room != pc.room {
		return
	}
	pc.mu.Lock()
	pc.ended[p.ParticipantID] = reason
	pc.mu.Unlock()
}

func (pc *placeCount) RoomStarted(string, string)              {}
func (pc *placeCount) ParticipantJoined(room.ParticipantEvent) {}
func (pc *placeCount) TrackPublished(room.PublishedTrack)      {}
func (pc *placeCount) TrackUnpublished(room.PublishedTrack)    {}
func (pc *placeCount) RoomClosed(string, string)               {}

// listStorm logs who got in and what each node holds: whose slot each
// participant has, and whether a node took another for gone meanwhile (a
// stalled node's members and slots are what a purge or take-back would
// free).
func listStorm(t testing.TB, srvs []*server.Server, room string, in []*client.Client, ended map[string]string) {
	t.Helper()
	ids := make([]string, 0, len(in))
	for _, c := range in {
		ids = append(ids, c.ParticipantID())
	}
	slices.Sort(ids)
	t.Logf("participants in: %v; ended by their node during the storm: %v", ids, ended)
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
}
