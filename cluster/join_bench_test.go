package cluster_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/starling-rtc/starling/client"
	"github.com/starling-rtc/starling/config"
)

// BenchmarkJoinOtherNode measures a join on a node that is not the room's
// first node (join request to join result: cluster admission, snapshot,
// peer connections), with the bus links as they are and with 50 ms added
// each way (TCP proxies).
//
//	go test -run '^$' -bench JoinOtherNode -benchtime 20x ./cluster/
func BenchmarkJoinOtherNode(b *testing.B) {
	for _, delay := range []time.Duration{0, 50 * time.Millisecond} {
		b.Run(fmt.Sprintf("bus+%s", delay), func(b *testing.B) {
			ports := freePorts(b, 3)
			tune := func(*config.Config) {}
			if delay > 0 {
				tune = slowBus(b, ports, delay, tune)
			}
			srvs := startNodes(b, ports, 3, tune)
			join(b, srvs[0], "bench", "first")
			api, err := client.LoopbackAPI()
			if err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				c, err := client.Dial(ctx, srvs[1+i%2].SignalingURL(), "bench", client.Options{Name: "j", API: api, LazyPublisher: true})
				cancel()
				if err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				c.Close()
				b.StartTimer()
			}
			b.ReportMetric(float64(srvs[0].Cluster().BusRTT().Microseconds())/1000, "bus-rtt-ms")
		})
	}
}
