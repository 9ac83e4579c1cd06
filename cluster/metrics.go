package cluster

import (
	"github.com/prometheus/client_golang/prometheus"
)

// collector exports the node's cluster figures at scrape time.
type collector struct {
	n                           *Node
	nodes, rtt, relayed, relayB *prometheus.Desc
}

// Collector is the Prometheus collector of this node's cluster figures:
// live nodes, bus round trip, relayed tracks and relay bytes.
func (n *Node) Collector() prometheus.Collector {
	return &collector{
		n:     n,
		nodes: prometheus.NewDesc("starling_cluster_nodes", "Live nodes of the cluster, this one included.", nil, nil),
		rtt: prometheus.NewDesc("starling_cluster_bus_rtt_seconds",
			"Last request/reply round trip to another node over the bus.", nil, nil),
		relayed: prometheus.NewDesc("starling_cluster_relayed_tracks",
			"Tracks crossing the media relay now, by direction (out: published here, in: received here).", []string{"direction"}, nil),
		relayB: prometheus.NewDesc("starling_cluster_relay_bytes_total",
			"Media bytes through the relay, by direction.", []string{"direction"}, nil),
	}
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.nodes
	ch <- c.rtt
	ch <- c.relayed
	ch <- c.relayB
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.MustNewConstMetric(c.nodes, prometheus.GaugeValue, float64(len(c.n.reg.list())))
	ch <- prometheus.MustNewConstMetric(c.rtt, prometheus.GaugeValue, c.n.BusRTT().Seconds())
	out, in, bout, bin := c.n.relayFigures()
	ch <- prometheus.MustNewConstMetric(c.relayed, prometheus.GaugeValue, float64(out), "out")
	ch <- prometheus.MustNewConstMetric(c.relayed, prometheus.GaugeValue, float64(in), "in")
	ch <- prometheus.MustNewConstMetric(c.relayB, prometheus.CounterValue, float64(bout), "out")
	ch <- prometheus.MustNewConstMetric(c.relayB, prometheus.CounterValue, float64(bin), "in")
}
