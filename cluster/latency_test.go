package cluster_test

import (
	"sync"
	"testing"
	"time"

	"github.com/starling-rtc/starling/client"
	"github.com/starling-rtc/starling/config"
	"github.com/starling-rtc/starling/internal/testutil"
)

// slowBus returns tune (nil: none) extended so that the nodes whose route
// ports are ports reach each other through proxies that delay every byte
// by delay each way (and advertise the proxies: no direct route beside
// them).
func slowBus(t testing.TB, ports []int, delay time.Duration, tune func(*config.Config)) func(*config.Config) {
	proxies := make([]int, len(ports))
	for i, p := range ports {
		proxies[i] = testutil.NewDelayProxy(t, "127.0.0.1:"+itoa(p), delay).Port()
	}
	return func(c *config.Config) {
		if tune != nil {
			tune(c)
		}
		c.Cluster.Routes = nil
		for i, p := range ports {
			if "127.0.0.1:"+itoa(p) != c.Cluster.Listen {
				c.Cluster.Routes = append(c.Cluster.Routes, "nats://127.0.0.1:"+itoa(proxies[i]))
			} else {
				c.Cluster.Advertise = "127.0.0.1:" + itoa(proxies[i])
			}
		}
	}
}

// Simultaneous joins of one new room on three nodes whose bus links have
// 200 ms of latency each way still make one room in which everyone sees
// everyone: no split room, no duplicate, no lost participantJoined.
func TestSimultaneousJoinsSlowBus(t *testing.T) {
	parallelLongest(t)
	if testing.Short() {
		t.Skip("slow bus: -short")
	}
	const delay = 200 * time.Millisecond
	srvs := startClusterOn(t, 3, func(ports []int) func(*config.Config) {
		return slowBus(t, ports, delay, nil)
	})
	if rtt := waitRTT(t, srvs[0].Cluster()); rtt < 2*delay {
		t.Fatalf("bus round trip %s: the routes bypass the proxies", rtt)
	}
	for round := 0; round < 2; round++ {
		room := "slow-" + itoa(round)
		cs := make([]*client.Client, 3)
		took := make([]time.Duration, 3)
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i := range srvs {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				<-start
				t0 := time.Now()
				cs[i] = joinNoFatal(t, srvs[i], room, "p"+itoa(i))
				took[i] = time.Since(t0)
			}(i)
		}
		close(start)
		wg.Wait()
		t.Logf("%s: joins took %v with a %s bus round trip", room, took, srvs[0].Cluster().BusRTT())
		for _, c := range cs {
			if c == nil {
				t.Fatal("a join failed")
			}
		}
		for _, c := range cs[1:] {
			if c.LastJoin().Room.SID != cs[0].LastJoin().Room.SID {
				t.Fatalf("split room %s: sids %s and %s", room, cs[0].LastJoin().Room.SID, c.LastJoin().Room.SID)
			}
		}
		seeEachOther(t, cs...)
	}
}
