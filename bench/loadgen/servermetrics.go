package loadgen

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// ServerMetrics is what the servers' /metrics said over the window, summed
// over the nodes: the Go runtime's allocation count (the whole process,
// signaling included) and congestion control's probes.
type ServerMetrics struct {
	Mallocs uint64 `json:"mallocs"` // go_memstats_mallocs_total
	// MallocsPerForwardedPacket is Mallocs ÷ every RTP packet the
	// subscribers received.
	MallocsPerForwardedPacket float64 `json:"mallocsPerForwardedPacket"`
	GCs                       uint64  `json:"gcs"`            // go_gc_duration_seconds_count
	Probes                    uint64  `json:"probes"`         // starling_bwe_probes_total
	PaddingPackets            uint64  `json:"paddingPackets"` // starling_bwe_padding_packets_total: written by the server
}

// PaddingStats is the padding-only packets (the server's bandwidth probes)
// each receiver got in the window.
type PaddingStats struct {
	Packets uint64 `json:"packets"`
	// Percent is padding in % of every RTP packet received, all receivers
	// together; MaxPercent the receiver with the largest share.
	Percent    float64 `json:"percent"`
	MaxPercent float64 `json:"maxPercent"`
	// PerSecond is padding packets per second per receiver (mean), and
	// the largest.
	PerSecond    float64 `json:"perSecond"`
	MaxPerSecond float64 `json:"maxPerSecond"`
	// ReceiversOver2Percent got more than 2% of their packets as padding
	// (issue 18's bound for a clean link).
	ReceiversOver2Percent int `json:"receiversOver2Percent"`
}

// metricsSample is one scrape of the counters ServerMetrics reads.
type metricsSample struct {
	mallocs, gcs, probes, padding uint64
}

// metricsBase turns a signaling URL (ws://host:port/v1/rtc) into the
// server's HTTP root, where /metrics is served.
func metricsBase(signaling string) (string, error) {
	u, err := url.Parse(signaling)
	if err != nil {
		return "", err
	}
	switch u.Scheme {
	case "ws", "http":
		return "http://" + u.Host, nil
	case "wss", "https":
		return "https://" + u.Host, nil
	}
	return "", fmt.Errorf("signaling URL %q: unknown scheme", signaling)
}

var metricsClient = &http.Client{Timeout: 3 * time.Second}

// scrapeMetrics reads the counters from every node; ok=false if any node
// did not answer (a server without /metrics, a remote one behind a proxy).
func (r *runner) scrapeMetrics() (metricsSample, bool) {
	var sum metricsSample
	for _, u := range r.cfg.urls() {
		base, err := metricsBase(u)
		if err != nil {
			return sum, false
		}
		m, err := scrapeOne(base + "/metrics")
		if err != nil {
			return sum, false
		}
		sum.mallocs += m.mallocs
		sum.gcs += m.gcs
		sum.probes += m.probes
		sum.padding += m.padding
	}
	return sum, true
}

func scrapeOne(addr string) (metricsSample, error) {
	var m metricsSample
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, addr, nil)
	if err != nil {
		return m, err
	}
	resp, err := metricsClient.Do(req)
	if err != nil {
		return m, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return m, fmt.Errorf("%s: HTTP %d", addr, resp.StatusCode)
	}
	found := false
	err = readMetrics(resp.Body, func(name string, v float64) {
		var dst *uint64
		switch name {
		case "go_memstats_mallocs_total":
			dst, found = &m.mallocs, true
		case "go_gc_duration_seconds_count":
			dst = &m.gcs
		case "starling_bwe_probes_total":
			dst = &m.probes
		case "starling_bwe_padding_packets_total":
			dst = &m.padding
		default:
			return
		}
		if v >= 0 {
			*dst = uint64(v)
		}
	})
	if err != nil {
		return m, err
	}
	if !found {
		return m, fmt.Errorf("%s: no go_memstats_mallocs_total", addr)
	}
	return m, nil
}

// readMetrics reads a Prometheus text exposition (GET /metrics) and calls
// f with each sample's name, labels included, and value. Comments, blank
// lines and samples whose value does not parse are skipped.
func readMetrics(r io.Reader, f func(name string, v float64)) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		name, val, ok := strings.Cut(sc.Text(), " ")
		if !ok || name == "" || name[0] == '#' {
			continue
		}
		if v, err := strconv.ParseFloat(strings.TrimSpace(val), 64); err == nil {
			f(name, v)
		}
	}
	return sc.Err()
}

// serverMetrics is the difference between two scrapes, per forwarded packet.
func serverMetrics(a, b metricsSample, received uint64) *ServerMetrics {
	sub := func(y, x uint64) uint64 {
		if y < x {
			return 0 // a node restarted
		}
		return y - x
	}
	m := &ServerMetrics{Mallocs: sub(b.mallocs, a.mallocs), GCs: sub(b.gcs, a.gcs),
		Probes: sub(b.probes, a.probes), PaddingPackets: sub(b.padding, a.padding)}
	if received > 0 {
		m.MallocsPerForwardedPacket = float64(m.Mallocs) / float64(received)
	}
	return m
}

// paddingStats computes the padding each receiver got between a and b.
func (r *runner) paddingStats(a, b snapshot, win float64) PaddingStats {
	var ps PaddingStats
	var all uint64
	receivers := 0
	for _, p := range r.parts {
		if p.c == nil || !p.receive {
			continue
		}
		receivers++
		var pad, pkts uint64
		for _, st := range p.streamList() {
			sb, sa := b.streams[st], a.streams[st]
			pad += sb.padding - sa.padding
			pkts += sb.packets - sa.packets
		}
		ps.Packets += pad
		all += pkts
		rate := float64(pad) / win
		ps.PerSecond += rate
		ps.MaxPerSecond = max(ps.MaxPerSecond, rate)
		if pkts > 0 {
			share := 100 * float64(pad) / float64(pkts)
			ps.MaxPercent = max(ps.MaxPercent, share)
			if share > 2 {
				ps.ReceiversOver2Percent++
			}
		}
	}
	if receivers > 0 {
		ps.PerSecond /= float64(receivers)
	}
	if all > 0 {
		ps.Percent = 100 * float64(ps.Packets) / float64(all)
	}
	return ps
}

// writeServerRows adds the padding and allocation rows to the table.
func (s *Summary) writeServerRows(row func(k, f string, a ...any)) {
	p := s.Padding
	row("padding", "%.2f%% of packets received, %.1f pkt/s per receiver (worst %.2f%%, %.1f pkt/s; %d receivers over 2%%)",
		p.Percent, p.PerSecond, p.MaxPercent, p.MaxPerSecond, p.ReceiversOver2Percent)
	if m := s.ServerMetrics; m != nil {
		row("server allocations", "%.3f mallocs per forwarded packet (%d in the window, %d GCs); %d probes, %d padding packets written",
			m.MallocsPerForwardedPacket, m.Mallocs, m.GCs, m.Probes, m.PaddingPackets)
	} else {
		row("server allocations", "not measured (the server's /metrics did not answer)")
	}
}
