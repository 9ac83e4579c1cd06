package bench

import (
	"context"
	"flag"
	"io"
	"log/slog"
	"runtime/pprof"
	"strings"
	"testing"
	"time"

	"github.com/starling-rtc/starling/bench/loadgen"
	"github.com/starling-rtc/starling/config"
	"github.com/starling-rtc/starling/internal/testutil/testnode"
	"github.com/starling-rtc/starling/server"
)

var (
	fanoutSubs     = flag.Int("subscribers", 50, "BenchmarkFanout: subscribers of the one publisher")
	fanoutDuration = flag.Duration("duration", 12*time.Second, "BenchmarkFanout: media time per run (the first 2 s are not measured)")
	fanoutBitrate  = flag.String("video-bitrate", "2.5M", "BenchmarkFanout: video bit rate")
	fanoutCC       = flag.Bool("congestion-control", true, "BenchmarkFanout: the server's rtc.congestion_control (bandwidth estimation, probes, pauses)")
	fanoutPreset   = flag.String("preset", loadgen.PresetWebinar, "BenchmarkFanout: the load generator's scenario (webinar, meeting, audio)")
	fanoutPubs     = flag.Int("publishers", -1, "BenchmarkFanout: publishers (-1 = the preset's default)")
	fanoutRecord   = flag.Bool("record", false, "BenchmarkFanout: record the room while it runs (starling-load --record)")
	fanoutCodec    = flag.String("codec", loadgen.CodecVP8, "BenchmarkFanout: video codec (vp8, h264)")
	fanoutSimul    = flag.String("simulcast", "", "BenchmarkFanout: on or off (default: the preset's, on for meeting)")
)

// startLabeledServer runs a node on loopback inside pprof.Do, so every
// goroutine it starts carries side=server.
func startLabeledServer(tb testing.TB) *server.Server {
	tb.Helper()
	cfg := testnode.Config()
	cfg.RTC.TCPPort = -1
	cfg.Room.EmptyTimeout = config.Duration(100 * time.Millisecond)
	cfg.RTC.CongestionControl = *fanoutCC
	cfg.Recordings.Dir = tb.TempDir()
	var srv *server.Server
	var err error
	pprof.Do(context.Background(), pprof.Labels("side", "server"), func(context.Context) {
		srv, err = server.New(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
		if err == nil {
			srv.Serve()
		}
	})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	})
	return srv
}

// BenchmarkFanout: one publisher (VP8 + Opus) to -subscribers subscribers
// (or another -preset)
// through an in-process server over real WebRTC on loopback. Each iteration
// is a whole run; use -benchtime 1x. Reported: packets received per second,
// loss, forwarding delay, and this process's CPU per forwarded packet (server
// and generator together: split them with the profile's labels).
func BenchmarkFanout(b *testing.B) {
	bitrate, err := loadgen.ParseBitrate(*fanoutBitrate)
	if err != nil {
		b.Fatal(err)
	}
	for i := 0; i < b.N; i++ {
		srv := startLabeledServer(b)
		cfg := loadgen.DefaultConfig()
		cfg.URL = srv.SignalingURL()
		cfg.Preset = *fanoutPreset
		cfg.Publishers = *fanoutPubs
		cfg.Subscribers = *fanoutSubs
		cfg.Record = *fanoutRecord
		cfg.Duration = *fanoutDuration
		cfg.Warmup = 2 * time.Second
		cfg.VideoBitrate = bitrate
		cfg.Codec = *fanoutCodec
		if *fanoutSimul != "" {
			var on loadgen.OnOff
			if err := on.Set(*fanoutSimul); err != nil {
				b.Fatal("-simulcast:", err)
			}
			sim := bool(on)
			cfg.Simulcast = &sim
		}
		cfg.JoinConcurrency = 8
		var sum *loadgen.Summary
		pprof.Do(context.Background(), pprof.Labels("side", "generator"), func(ctx context.Context) {
			sum, err = loadgen.Run(ctx, cfg)
		})
		if err != nil {
			b.Fatal(err)
		}
		if sum.StreamsStarted < sum.StreamsExpected {
			b.Fatalf("only %d of %d streams started", sum.StreamsStarted, sum.StreamsExpected)
		}
		if !sum.RecordingsOK() {
			b.Fatalf("recording failed: %+v", sum.Recordings)
		}
		b.ReportMetric(sum.Received.PacketsPerSecond, "rx-pkt/s")
		b.ReportMetric(float64(sum.Received.PaddingPackets)/sum.WindowSeconds, "rx-padding/s")
		b.ReportMetric(sum.Loss.Percent, "loss-%")
		b.ReportMetric(sum.DelayMs.P50, "delay-p50-ms")
		b.ReportMetric(sum.DelayMs.P99, "delay-p99-ms")
		if g := sum.Generator; g != nil && sum.Received.Packets > 0 {
			// /proc/self is the whole process: server + generator.
			b.ReportMetric(g.CPUSeconds*1e6/float64(sum.Received.Packets), "process-µs/fwd-pkt")
			b.ReportMetric(g.CPUPercent, "process-CPU-%")
		}
		if testing.Verbose() {
			var out strings.Builder
			_ = sum.WriteTable(&out)
			b.Logf("\n%s", out.String())
		}
	}
}
