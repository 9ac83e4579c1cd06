package server_test

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pion/rtcp"

	"github.com/starling-rtc/starling/protocol"
	"github.com/starling-rtc/starling/server"
)

// scrape fetches /metrics and returns every sample by its full name with labels.
func scrape(t testing.TB, srv *server.Server) map[string]float64 {
	t.Helper()
	resp, err := http.Get("http://" + srv.Addr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/metrics: %s", resp.Status)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("bad sample line %q", line)
		}
		out[line[:i]] = v
	}
	return out
}

func getStatus(t testing.TB, url string) int {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// TestMetrics: gauges follow rooms and participants, media counters move
// when media flows and never go down, errors are counted by code.
func TestMetrics(t *testing.T) {
	parallel(t)
	srv := startServer(t, nil)
	m := scrape(t, srv)
	for _, name := range []string{"starling_rooms", "starling_participants", "starling_tracks", "starling_forwarded_packets_total", "starling_dropped_packets_total",
		"go_goroutines", "process_open_fds", "starling_signaling_join_duration_seconds_count"} {
		if _, ok := m[name]; !ok {
			t.Errorf("/metrics lacks %s", name)
		}
	}
	if m["starling_rooms"] != 0 || m["starling_forwarded_packets_total"] != 0 {
		t.Fatalf("idle node: rooms %v forwarded %v", m["starling_rooms"], m["starling_forwarded_packets_total"])
	}

	sub := join(t, srv, "metrics", "sub")
	rec := record(sub)
	pub := join(t, srv, "metrics", "pub")
	media := publishFake(t, pub)
	video := media.track("video")
	waitFor(t, 15*time.Second, "media at the subscriber", func() bool { return len(rec.payloads(video.ID)) > 30 })

	m = scrape(t, srv)
	if m["starling_rooms"] != 1 || m["starling_participants"] != 2 || m["starling_tracks"] != 2 || m["starling_subscriptions"] != 2 {
		t.Fatalf("rooms %v participants %v tracks %v subscriptions %v, want 1 2 2 2",
			m["starling_rooms"], m["starling_participants"], m["starling_tracks"], m["starling_subscriptions"])
	}
	fwd := m["starling_forwarded_packets_total"]
	if fwd < 30 || m["starling_forwarded_bytes_total"] < 30*200 || m["starling_received_packets_total"] < fwd {
		t.Fatalf("forwarded %v packets / %v bytes, received %v", fwd, m["starling_forwarded_bytes_total"], m["starling_received_packets_total"])
	}
	if m["starling_signaling_join_duration_seconds_count"] != 2 {
		t.Fatalf("join latency count %v, want 2", m["starling_signaling_join_duration_seconds_count"])
	}
	if m[`starling_signaling_messages_total{method="join"}`] != 2 || m[`starling_signaling_messages_total{method="offer"}`] < 3 {
		t.Fatalf("messages by method wrong: join %v offer %v",
			m[`starling_signaling_messages_total{method="join"}`], m[`starling_signaling_messages_total{method="offer"}`])
	}

	// Still flowing: the counter grows.
	waitFor(t, 5*time.Second, "forwarded counter to grow", func() bool {
		return scrape(t, srv)["starling_forwarded_packets_total"] > fwd+20
	})

	// A subscriber's keyframe request and NACK are counted, and the request
	// reaches the publisher. These counters are process totals (other tests
	// add to them too): compare before and after.
	ssrc := kfVideoSSRC(sub)
	if err := sub.Subscriber().WriteRTCP([]rtcp.Packet{
		&rtcp.PictureLossIndication{MediaSSRC: ssrc},
		&rtcp.TransportLayerNack{MediaSSRC: ssrc, Nacks: []rtcp.NackPair{{PacketID: 1, LostPackets: 0b11}}},
	}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "keyframe request and NACK counters", func() bool {
		n := scrape(t, srv)
		return n["starling_keyframe_requests_received_total"] >= m["starling_keyframe_requests_received_total"]+1 &&
			n["starling_keyframe_requests_sent_total"] >= m["starling_keyframe_requests_sent_total"]+1 &&
			n["starling_nacks_received_total"] >= m["starling_nacks_received_total"]+3
	})

	// Receiver reports show as quantiles over subscriptions (the Go client
	// echoes the server's sender reports, so the round trip is known).
	waitFor(t, 10*time.Second, "reception quantiles", func() bool {
		n := scrape(t, srv)
		rtt, ok := n[`starling_subscription_rtt_seconds{quantile="0.5"}`]
		_, okLoss := n[`starling_subscription_loss_ratio{quantile="1"}`]
		return ok && okLoss && rtt > 0 && rtt < 1
	})

	// Errors by code, unknown methods labelled "other".
	var perr *protocol.Error
	if err := sub.Call(ctxT(t, 5*time.Second), "bogus", protocol.Empty{}, nil); !errors.As(err, &perr) || perr.Code != protocol.CodeMethodNotFound {
		t.Fatalf("bogus method: %v", err)
	}
	if err := sub.Call(ctxT(t, 5*time.Second), protocol.MethodSubscribe, protocol.TrackIDsParams{TrackIDs: []string{"TR_nope"}}, nil); !errors.As(err, &perr) || perr.Code != protocol.CodeNotFound {
		t.Fatalf("subscribe unknown: %v", err)
	}
	m = scrape(t, srv)
	if m[`starling_signaling_errors_total{code="-32601"}`] != 1 || m[`starling_signaling_errors_total{code="404"}`] != 1 ||
		m[`starling_signaling_messages_total{method="other"}`] != 1 {
		t.Fatalf("errors -32601 %v, 404 %v, other %v; want 1 1 1", m[`starling_signaling_errors_total{code="-32601"}`],
			m[`starling_signaling_errors_total{code="404"}`], m[`starling_signaling_messages_total{method="other"}`])
	}

	// The subscriber leaves: its subscriptions are gone, the totals stay.
	before := m["starling_forwarded_packets_total"]
	sub.Close()
	waitFor(t, 10*time.Second, "participant gauge to drop", func() bool { return scrape(t, srv)["starling_participants"] == 1 })
	m = scrape(t, srv)
	if m["starling_subscriptions"] != 0 || m["starling_forwarded_packets_total"] < before {
		t.Fatalf("after leave: subscriptions %v, forwarded %v (was %v)", m["starling_subscriptions"], m["starling_forwarded_packets_total"], before)
	}
}

// TestReadyz: ready while serving, 503 once draining; healthz stays up.
func TestReadyz(t *testing.T) {
	parallel(t)
	srv := startServer(t, nil)
	base := "http://" + srv.Addr()
	if c := getStatus(t, base+"/readyz"); c != http.StatusOK {
		t.Fatalf("/readyz = %d, want 200", c)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Rooms().Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if c := getStatus(t, base+"/readyz"); c != http.StatusServiceUnavailable {
		t.Fatalf("/readyz while draining = %d, want 503", c)
	}
	if c := getStatus(t, base+"/healthz"); c != http.StatusOK {
		t.Fatalf("/healthz while draining = %d, want 200", c)
	}
}
