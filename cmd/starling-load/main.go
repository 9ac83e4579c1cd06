// Command starling-load is Starling's load generator: synthetic VP8 or
// H.264 (optionally simulcast) and Opus publishers and light subscribers that join a server over real WebRTC (the
// Go client, loopback only), run for a while and print what they measured:
// delivery, loss, forwarding delay, join time and the server's CPU and
// memory read from /proc.
//
//	starling-load --preset webinar --subscribers 50 --duration 30s --server-pid $(pidof starling)
//	starling-load --preset webinar --subscribers 50 --start-server --server-bin /tmp/starling
//	starling-load --preset meeting --publishers 10 --record --start-server --server-bin /tmp/starling
//	starling-load --preset webinar --codec h264 --simulcast --start-server --server-bin /tmp/starling
//
// See docs/benchmarks.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/starling-rtc/starling/auth"
	"github.com/starling-rtc/starling/bench/loadgen"
	"github.com/starling-rtc/starling/client"
)

func main() {
	os.Exit(run(context.Background(), os.Args[1:], os.Stdout, os.Stderr))
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cfg := loadgen.DefaultConfig()
	fs := flag.NewFlagSet("starling-load", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&cfg.URL, "url", cfg.URL, "signaling `URL` of the server (loopback only); several nodes comma-separated: publishers join the first, viewers go round-robin over all")
	fs.StringVar(&cfg.Preset, "preset", cfg.Preset, "scenario: meeting (publishers watch each other), webinar (publishers → viewers) or audio")
	fs.IntVar(&cfg.Rooms, "rooms", cfg.Rooms, "number of rooms, each running the scenario")
	fs.BoolVar(&cfg.PinRooms, "pin-rooms", false, "with several --url nodes: each room joins one node whole, the rooms in turn\n"+
		"(no media crosses nodes; the baseline of the cluster relay's cost at the same load per node)")
	fs.IntVar(&cfg.Publishers, "publishers", cfg.Publishers, "publishers per room (-1 = preset default: webinar 1, meeting 4, audio 4)")
	fs.IntVar(&cfg.Subscribers, "subscribers", cfg.Subscribers, "receive-only participants per room (-1 = preset default: webinar 10, meeting 0, audio 20)")
	fs.DurationVar(&cfg.Duration, "duration", cfg.Duration, "media time, from the first publish until the run stops")
	fs.DurationVar(&cfg.Warmup, "warmup", cfg.Warmup, "first part of --duration left out of the measurements")
	fs.DurationVar(&cfg.StartWait, "start-wait", cfg.StartWait, "after --warmup, wait up to this long for every stream to start before measuring (0 = do not wait)")
	vbr := loadgen.Bitrate(cfg.VideoBitrate)
	fs.Var(&vbr, "video-bitrate", "video bit rate per publisher (encoder output), e.g. 2.5M or 800k")
	fs.IntVar(&cfg.FPS, "fps", cfg.FPS, "video frames per second")
	size := fmt.Sprintf("%dx%d", cfg.Width, cfg.Height)
	fs.StringVar(&size, "size", size, "video `WxH` written in keyframe headers")
	fs.DurationVar(&cfg.KeyframeInterval, "keyframe-interval", cfg.KeyframeInterval, "periodic keyframes (plus one per server PLI)")
	fs.StringVar(&cfg.Codec, "codec", cfg.Codec, "video codec: vp8 or h264 (synthetic frames, keyframes carry their size)")
	simulcast := loadgen.OnOff(false)
	fs.Var(&simulcast, "simulcast", "send video as three simulcast layers q/h/f (¼, ½ and the full --size; 10/25/65% of --video-bitrate)\n"+
		"and follow the server's publishLayers (default: on for the meeting preset, off otherwise)")
	video := loadgen.OnOff(cfg.Video)
	fs.Var(&video, "video", "publish video: on or off (the audio preset never does)")
	audio := loadgen.OnOff(cfg.Audio)
	fs.Var(&audio, "audio", "publish Opus audio: on or off")
	abr := loadgen.Bitrate(cfg.AudioBitrate)
	fs.Var(&abr, "audio-bitrate", "audio bit rate per publisher")
	fs.BoolVar(&cfg.Mix, "mix", cfg.Mix, "receivers get the room's audio as the server's live mix (join audioMix), one stream each;\n"+
		"the talking publishers send the audio level the mixer ranks by")
	fs.IntVar(&cfg.Speakers, "speakers", cfg.Speakers, "publishers per room whose microphone is live; the others mute it (the protocol's mute)\n"+
		"and keep sending, as a browser does with a disabled track (-1 = all)")
	fs.IntVar(&cfg.JoinConcurrency, "join-concurrency", cfg.JoinConcurrency, "participants joining at the same time")
	pids := fs.String("server-pid", "", "`PID` of a local server: report its CPU and RSS from /proc; several nodes' PIDs\n"+
		"comma-separated: their sum, and each node")
	startServer := fs.Bool("start-server", false, "start the server (--server-bin) on free loopback ports and measure it")
	serverBin := fs.String("server-bin", "", "`path` of the starling binary for --start-server (go build -o /tmp/starling ./cmd/starling)")
	serverLog := fs.String("server-log-level", "error", "log level of a started server; its log goes to stderr")
	var serverArgs []string
	fs.Func("server-arg", "extra `flag` for a started server, repeatable (e.g. --server-arg=--congestion-control=false)", func(s string) error {
		serverArgs = append(serverArgs, s)
		return nil
	})
	record := fs.Bool("record", false, "record every room while loading: POST /v1/rooms/{room}/recordings after the joins, DELETE after the window;\n"+
		"the summary reports the HTTP answers, files, bytes and frames written (exit status 4 if a recording failed or wrote nothing)")
	fs.DurationVar(&cfg.RecordStopAfter, "record-stop-after", 0, "with --record: stop the recordings this long after the first publish while the load goes on,\n"+
		"so the measured window includes stopping them (0 = after the window)")
	recordDir := fs.String("record-dir", "", "with --start-server --record: the server's recordings `folder`, kept afterwards\n(default: a temporary folder, removed at the end)")
	recordToken := fs.String("record-token", "", "bearer `token` for the recording API of a server with API keys (record or admin grant;\ndefault $STARLING_RECORD_TOKEN, else one minted from --keys)")
	keysFlag := fs.String("keys", "", "the server's API keys, `key:secret,...` (default $"+auth.EnvKeys+"): join and record tokens are minted from the first;\n"+
		"with --start-server the server gets these keys, or a fresh random key when none are given")
	soakFor := fs.Duration("soak", 0, "soak mode: churn against one server for this long (joins, leaves, publishes, unpublishes, resumes,\n"+
		"subscription changes, data messages, mutes, kicks and recordings through the admin API), then idle; samples the server's\n"+
		"/metrics every --soak-sample and checks that every gauge, goroutines and open files return to their idle values,\n"+
		"no data message was lost and the server logged no error (exit status 5 otherwise); see docs/benchmarks.md")
	soakRooms := fs.Int("soak-rooms", 3, "with --soak: rooms to churn in")
	soakWorkers := fs.Int("soak-workers", 4, "with --soak: churn loops at once (each a publisher and a subscriber)")
	soakSample := fs.Duration("soak-sample", 10*time.Second, "with --soak: sampling interval")
	jsonPath := fs.String("json", "", "also write the summary as JSON to `file` (- = stdout)")
	quiet := fs.Bool("quiet", false, "no progress lines")
	verbose := fs.Bool("v", false, "log client warnings (join and publish failures) to stderr")
	cpuProfile := fs.String("cpuprofile", "", "write the load generator's own CPU profile to `file`")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "starling-load: unexpected argument %q (all options are flags)\n", fs.Arg(0))
		return 2
	}
	cfg.VideoBitrate, cfg.AudioBitrate = int64(vbr), int64(abr)
	fs.Visit(func(f *flag.Flag) {
		if f.Name == "simulcast" {
			on := bool(simulcast)
			cfg.Simulcast = &on
		}
	})
	cfg.Video, cfg.Audio = bool(video), bool(audio)
	if _, err := fmt.Sscanf(size, "%dx%d", &cfg.Width, &cfg.Height); err != nil {
		fmt.Fprintf(stderr, "starling-load: --size %q: want WIDTHxHEIGHT\n", size)
		return 2
	}
	if *pids != "" {
		for _, f := range strings.Split(*pids, ",") {
			pid, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || pid <= 0 {
				fmt.Fprintf(stderr, "starling-load: --server-pid %q: want PIDs, comma-separated\n", *pids)
				return 2
			}
			if cfg.ServerPID == 0 {
				cfg.ServerPID = pid
			} else {
				cfg.ServerPIDs = append(cfg.ServerPIDs, pid)
			}
		}
	}
	if !*quiet {
		cfg.Progress = stderr
	}
	if *verbose {
		cfg.Logger = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	// Defaults from the environment, read here so --help never prints a secret.
	if *keysFlag == "" {
		*keysFlag = os.Getenv(auth.EnvKeys)
	}
	if *recordToken == "" {
		*recordToken = os.Getenv("STARLING_RECORD_TOKEN")
	}
	keys, err := auth.ParseKeys(*keysFlag)
	if err != nil {
		fmt.Fprintln(stderr, "starling-load: --keys:", err)
		return 2
	}
	cfg.Keys, cfg.Record, cfg.RecordToken = keys, *record, *recordToken
	if *recordDir != "" && !(*startServer && *record) {
		fmt.Fprintln(stderr, "starling-load: --record-dir needs --start-server and --record (an external server records where it is configured to)")
		return 2
	}

	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()

	var serverErrors *errorLines
	if *soakFor > 0 {
		if *record {
			fmt.Fprintln(stderr, "starling-load: --soak records by itself (when the server has a recordings folder); drop --record")
			return 2
		}
		if *startServer {
			// rooms close soon after their last participant, so that idle comes
			// within the soak's wait; the log counts the server's errors
			// (--pprof: the soak asks for a GC before its idle samples)
			serverArgs = append([]string{"--empty-timeout", "2s", "--pprof"}, serverArgs...)
			serverErrors = &errorLines{w: stderr}
		}
	}

	if *startServer {
		if cfg.ServerPID != 0 {
			fmt.Fprintln(stderr, "starling-load: --start-server and --server-pid exclude each other")
			return 2
		}
		if len(cfg.Keys) == 0 {
			cfg.Keys = loadgen.NewKeys() // a server like a real one: tokens for joins and the API
		}
		opts := loadgen.ServerOptions{Bin: *serverBin, LogLevel: *serverLog, Log: stderr, Keys: cfg.Keys, Args: serverArgs}
		if serverErrors != nil {
			opts.Log = serverErrors
		}
		if *record || *soakFor > 0 {
			opts.RecordingsDir = *recordDir
			if opts.RecordingsDir == "" {
				tmp, err := os.MkdirTemp("", "starling-load-rec-")
				if err != nil {
					fmt.Fprintln(stderr, "starling-load:", err)
					return 1
				}
				defer os.RemoveAll(tmp)
				opts.RecordingsDir = tmp
			} else if err := os.MkdirAll(opts.RecordingsDir, 0o755); err != nil {
				fmt.Fprintln(stderr, "starling-load: --record-dir:", err)
				return 1
			}
			if abs, err := filepath.Abs(opts.RecordingsDir); err == nil {
				opts.RecordingsDir = abs
			}
		}
		srv, err := loadgen.StartServerWith(ctx, opts)
		if err != nil {
			fmt.Fprintln(stderr, "starling-load:", err)
			return 1
		}
		defer func() {
			if err := srv.Stop(); err != nil {
				fmt.Fprintln(stderr, "starling-load: stopping the server:", err)
			}
		}()
		cfg.URL, cfg.ServerPID = srv.URL(), srv.PID()
		fmt.Fprintf(stderr, "started %s (pid %d) at %s, API key %q", strings.Join(append([]string{*serverBin}, serverArgs...), " "),
			srv.PID(), srv.URL(), cfg.Keys.Names()[0])
		if opts.RecordingsDir != "" {
			fmt.Fprintf(stderr, ", recordings in %s", opts.RecordingsDir)
			if *recordDir == "" {
				fmt.Fprint(stderr, " (removed at the end; --record-dir keeps them)")
			}
		}
		fmt.Fprintln(stderr)
	}
	for _, u := range client.ServerURLs(cfg.URL) {
		if !loopbackURL(u) {
			fmt.Fprintf(stderr, "starling-load: --url %q: only loopback servers (127.0.0.1, localhost, [::1]) are allowed\n", u)
			return 2
		}
	}

	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			fmt.Fprintln(stderr, "starling-load:", err)
			return 1
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintln(stderr, "starling-load:", err)
			return 1
		}
		defer pprof.StopCPUProfile()
	}
	if *soakFor > 0 {
		return runSoak(ctx, loadgen.SoakConfig{URL: client.ServerURLs(cfg.URL)[0], Duration: *soakFor, Rooms: *soakRooms,
			Workers: *soakWorkers, Sample: *soakSample, Keys: cfg.Keys, Record: *startServer, Progress: cfg.Progress,
			ServerErrors: serverErrors.count}, *jsonPath, stdout, stderr)
	}
	sum, err := loadgen.Run(ctx, cfg)
	if err != nil {
		fmt.Fprintln(stderr, "starling-load:", err)
		return 1
	}
	fmt.Fprintln(stdout)
	if err := sum.WriteTable(stdout); err != nil {
		return 1
	}
	if *jsonPath != "" {
		if err := writeJSON(*jsonPath, sum, stdout); err != nil {
			fmt.Fprintln(stderr, "starling-load:", err)
			return 1
		}
	}
	if sum.StreamsStarted < sum.StreamsExpected || sum.JoinFailures > 0 {
		fmt.Fprintln(stderr, "starling-load: some participants did not join or some streams never started")
		return 3
	}
	if !sum.RecordingsOK() {
		fmt.Fprintln(stderr, "starling-load: a recording failed or wrote nothing")
		return 4
	}
	return 0
}

func writeJSON(path string, sum *loadgen.Summary, stdout io.Writer) error {
	if path == "-" {
		return sum.WriteJSON(stdout)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := sum.WriteJSON(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// loopbackURL reports whether the URL's host is a loopback address: the
// generator sends real media and must not load anyone else's server.
func loopbackURL(u string) bool {
	p, err := url.Parse(u)
	if err != nil || (p.Scheme != "ws" && p.Scheme != "wss") {
		return false
	}
	host := p.Hostname()
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
