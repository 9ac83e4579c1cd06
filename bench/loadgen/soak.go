package loadgen

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/pion/webrtc/v4"
	"github.com/starling-rtc/starling/auth"
	"github.com/starling-rtc/starling/client"
)

// SoakConfig configures a soak: churn against one server for Duration,
// then idle, checking that the server returns to where it started.
type SoakConfig struct {
	URL      string        // signaling URL of the server (loopback)
	Duration time.Duration // churn time
	Rooms    int           // rooms churned in (default 3)
	Workers  int           // churn loops running at once (default 4)
	Sample   time.Duration // sampling interval (default 10 s)
	// IdleWait bounds the wait for the idle values after the churn
	// (default 60 s; rooms close after the server's empty timeout).
	IdleWait time.Duration
	Keys     auth.Keys // the server's keys: join and admin tokens (none: an open server)
	// Record starts and stops a room recording in some iterations (the
	// server needs a recordings folder).
	Record bool
	// ServerErrors, if set, counts the server's errors so far (the
	// error-level lines of its log).
	ServerErrors func() int
	Progress     io.Writer // one line per sample; nil = none
	// GC, if set, runs a garbage collection in the server before each idle
	// sample (an in-process server: runtime.GC); otherwise the soak asks
	// the server's /debug/pprof/heap?gc=1 (--pprof), so that the heap
	// compared is what is still reachable, not garbage no GC collected yet.
	GC func()
}

// SoakSample is one sample of the server.
type SoakSample struct {
	At            time.Duration `json:"at_ms"` // since the start of the churn (negative: baseline)
	Phase         string        `json:"phase"` // baseline, churn, idle
	Rooms         float64       `json:"rooms"`
	Participants  float64       `json:"participants"`
	Tracks        float64       `json:"tracks"`
	Subscriptions float64       `json:"subscriptions"`
	Recordings    float64       `json:"recordings"`
	Goroutines    float64       `json:"goroutines"`
	OpenFDs       float64       `json:"open_fds"`
	RSSMB         float64       `json:"rss_mb"`
	HeapMB        float64       `json:"heap_alloc_mb"` // bytes in heap objects (after a GC: live)
	Errors500     float64       `json:"signaling_errors_500"`
}

// SoakResult is what a soak did and found.
type SoakResult struct {
	Samples      []SoakSample   `json:"samples"`
	Baseline     SoakSample     `json:"baseline"`
	Final        SoakSample     `json:"final"`
	Ops          map[string]int `json:"ops"`
	OpErrors     map[string]int `json:"op_errors"`
	DataSent     int            `json:"data_sent"`
	DataReceived int            `json:"data_received"`
	DataLost     int            `json:"data_lost"`
	ServerErrors int            `json:"server_errors"`
	IdleAfter    time.Duration  `json:"idle_after_ms"`
	Problems     []string       `json:"problems"`
	// Incidents: the first iterations that lost a data message or had an
	// operation fail, step by step (soak_trace.go).
	Incidents []SoakIncident `json:"incidents,omitempty"`
}

// OK says whether the soak found nothing wrong.
func (r *SoakResult) OK() bool { return len(r.Problems) == 0 }

type soak struct {
	cfg   SoakConfig
	api   *webrtc.API
	http  *http.Client
	base  string // http://host:port
	admin string // admin token ("" on an open server)
	mu    sync.Mutex
	ops   map[string]int
	errs  map[string]int
	first map[string]string // first error message per operation
	// incidents: see SoakResult.Incidents; guarded by mu
	incidents []SoakIncident
	sent      atomic.Int64
	recv      atomic.Int64
	lost      atomic.Int64
	serial    atomic.Int64
}

// Soak runs the churn, samples the server every cfg.Sample, then waits for
// it to go idle and compares with the baseline taken before the churn.
func Soak(ctx context.Context, cfg SoakConfig) (*SoakResult, error) {
	if cfg.Rooms <= 0 {
		cfg.Rooms = 3
	}
	if cfg.Workers <= 0 {
		cfg.Workers = 4
	}
	if cfg.Sample <= 0 {
		cfg.Sample = 10 * time.Second
	}
	if cfg.IdleWait <= 0 {
		cfg.IdleWait = 60 * time.Second
	}
	u, err := url.Parse(cfg.URL)
	if err != nil {
		return nil, err
	}
	scheme := "http"
	if u.Scheme == "wss" {
		scheme = "https"
	}
	api, err := client.LoopbackAPIWith(nil, lightInterceptors)
	if err != nil {
		return nil, err
	}
	s := &soak{cfg: cfg, api: api, base: scheme + "://" + u.Host, ops: map[string]int{}, errs: map[string]int{}, first: map[string]string{},
		// no keep-alive: an idle connection of ours would hold goroutines
		// and a file in the server and blur the idle comparison
		http: &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}}
	if len(cfg.Keys) > 0 {
		if s.admin, err = s.token("soak-admin", auth.Grants{Admin: true}); err != nil {
			return nil, err
		}
	}
	res := &SoakResult{}
	say := func(smp SoakSample) {
		if cfg.Progress != nil {
			fmt.Fprintf(cfg.Progress, "soak %-8s %6.0fs rooms %2.0f participants %3.0f tracks %3.0f subscriptions %3.0f recordings %1.0f | goroutines %5.0f fds %4.0f rss %6.1f MB heap %6.1f MB\n",
				smp.Phase, smp.At.Seconds(), smp.Rooms, smp.Participants, smp.Tracks, smp.Subscriptions, smp.Recordings,
				smp.Goroutines, smp.OpenFDs, smp.RSSMB, smp.HeapMB)
		}
	}
	start := time.Now()
	sample := func(phase string) (SoakSample, error) {
		smp, err := s.scrape()
		smp.At, smp.Phase = time.Since(start), phase
		if err == nil {
			res.Samples = append(res.Samples, smp)
			say(smp)
		}
		return smp, err
	}
	errs0 := 0
	if cfg.ServerErrors != nil {
		errs0 = cfg.ServerErrors()
	}
	if res.Baseline, err = sample("baseline"); err != nil {
		return nil, fmt.Errorf("reading %s/metrics: %w", s.base, err)
	}
	start = time.Now()

	churnCtx, cancel := context.WithTimeout(ctx, cfg.Duration)
	defer cancel()
	var wg sync.WaitGroup
	for w := 0; w < cfg.Workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), uint64(time.Now().UnixNano())))
			for i := 0; i == 0 || churnCtx.Err() == nil; i++ {
				ictx := churnCtx
				if i == 0 {
					// Every worker finishes its first iteration however
					// slow the machine (each step has its own timeout):
					// together they cover every operation.
					ictx = ctx
				}
				s.iteration(ictx, rng, w, i)
			}
		}(w)
	}
	tick := time.NewTicker(cfg.Sample)
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
loop:
	for {
		select {
		case <-done:
			break loop
		case <-tick.C:
			_, _ = sample("churn")
		}
	}
	tick.Stop()
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}

	// idle: every gauge back at its baseline
	churnEnd := time.Now()
	deadline := churnEnd.Add(cfg.IdleWait)
	next := time.Now()
	for {
		time.Sleep(time.Until(next))
		next = next.Add(time.Second)
		s.gc()
		smp, err := s.scrape()
		if err == nil {
			smp.At, smp.Phase = time.Since(start), "idle"
			res.Final = smp
			if idleProblems(res.Baseline, smp) == nil {
				res.IdleAfter = time.Since(churnEnd)
				res.Samples = append(res.Samples, smp)
				say(smp)
				break
			}
			if len(res.Samples) > 0 && smp.At-res.Samples[len(res.Samples)-1].At >= cfg.Sample {
				res.Samples = append(res.Samples, smp)
				say(smp)
			}
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			res.Samples = append(res.Samples, res.Final)
			res.IdleAfter = -1
			break
		}
	}

	s.mu.Lock()
	res.Ops, res.OpErrors, res.Incidents = s.ops, s.errs, s.incidents
	s.mu.Unlock()
	res.DataSent, res.DataReceived, res.DataLost = int(s.sent.Load()), int(s.recv.Load()), int(s.lost.Load())
	if cfg.ServerErrors != nil {
		res.ServerErrors = cfg.ServerErrors() - errs0
	}
	res.Problems = append(res.Problems, idleProblems(res.Baseline, res.Final)...)
	if res.IdleAfter < 0 {
		res.Problems = append(res.Problems, fmt.Sprintf("not idle %v after the churn", cfg.IdleWait))
	}
	if res.DataLost > 0 {
		res.Problems = append(res.Problems, fmt.Sprintf("%d of %d data messages lost", res.DataLost, res.DataSent))
	}
	if res.ServerErrors > 0 {
		res.Problems = append(res.Problems, fmt.Sprintf("%d errors in the server's log", res.ServerErrors))
	}
	if d := res.Final.Errors500 - res.Baseline.Errors500; d > 0 {
		res.Problems = append(res.Problems, fmt.Sprintf("%.0f internal errors (500) answered on signaling", d))
	}
	for i, inc := range res.Incidents {
		if inc.Cause != "" {
			res.Problems = append(res.Problems, fmt.Sprintf("incident %d: %s; what failed in that iteration after it follows from it", i+1, inc.Cause))
		}
	}
	s.mu.Lock()
	for op, n := range res.OpErrors {
		res.Problems = append(res.Problems, fmt.Sprintf("%d failed %s (first: %s)", n, op, s.first[op]))
	}
	s.mu.Unlock()
	if res.Ops["join"] == 0 {
		res.Problems = append(res.Problems, "no participant joined")
	}
	return res, nil
}

// idleProblems compares an idle sample with the baseline: every gauge
// back, goroutines within 5, open files within 2, the heap's live bytes
// (go_memstats_heap_alloc_bytes, after the GC the soak asks for) within
// 10 MB (heap_inuse would count half-empty spans the runtime keeps; RSS
// is reported, not compared: the Go runtime returns memory to the system
// over minutes).
func idleProblems(b, f SoakSample) []string {
	var p []string
	for _, g := range []struct {
		name string
		b, f float64
	}{{"rooms", b.Rooms, f.Rooms}, {"participants", b.Participants, f.Participants}, {"tracks", b.Tracks, f.Tracks},
		{"subscriptions", b.Subscriptions, f.Subscriptions}, {"recordings", b.Recordings, f.Recordings}} {
		if g.f != g.b {
			p = append(p, fmt.Sprintf("%s: %.0f, idle value %.0f", g.name, g.f, g.b))
		}
	}
	if f.Goroutines > b.Goroutines+5 {
		p = append(p, fmt.Sprintf("goroutines: %.0f, idle value %.0f", f.Goroutines, b.Goroutines))
	}
	if f.OpenFDs > b.OpenFDs+2 {
		p = append(p, fmt.Sprintf("open files: %.0f, idle value %.0f", f.OpenFDs, b.OpenFDs))
	}
	if f.HeapMB > b.HeapMB+10 {
		p = append(p, fmt.Sprintf("heap (live after GC): %.1f MB, idle value %.1f MB", f.HeapMB, b.HeapMB))
	}
	return p
}

// gc makes the server collect garbage before a sample (see SoakConfig.GC).
func (s *soak) gc() {
	if s.cfg.GC != nil {
		s.cfg.GC()
		return
	}
	resp, err := s.http.Get(s.base + "/debug/pprof/heap?gc=1")
	if err == nil {
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
}

// scrape reads the gauges from /metrics.
func (s *soak) scrape() (SoakSample, error) {
	var smp SoakSample
	resp, err := s.http.Get(s.base + "/metrics")
	if err != nil {
		return smp, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return smp, fmt.Errorf("/metrics: HTTP %d", resp.StatusCode)
	}
	err = readMetrics(resp.Body, func(name string, v float64) {
		switch name {
		case "starling_rooms":
			smp.Rooms = v
		case "starling_participants":
			smp.Participants = v
		case "starling_tracks":
			smp.Tracks = v
		case "starling_subscriptions":
			smp.Subscriptions = v
		case "starling_recordings":
			smp.Recordings = v
		case "go_goroutines":
			smp.Goroutines = v
		case "process_open_fds":
			smp.OpenFDs = v
		case "process_resident_memory_bytes":
			smp.RSSMB = v / (1 << 20)
		case "go_memstats_heap_alloc_bytes":
			smp.HeapMB = v / (1 << 20)
		case `starling_signaling_errors_total{code="500"}`:
			smp.Errors500 = v
		}
	})
	return smp, err
}

func (s *soak) token(identity string, g auth.Grants) (string, error) {
	if len(s.cfg.Keys) == 0 {
		return "", nil
	}
	key := s.cfg.Keys.Names()[0]
	return auth.Issue(key, s.cfg.Keys[key], auth.Claims{Grants: g, RegisteredClaims: jwt.RegisteredClaims{Subject: identity}},
		s.cfg.Duration+s.cfg.IdleWait+15*time.Minute)
}

func (s *soak) count(op string, err error) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ops[op]++
	if counts(err) {
		s.errs[op]++
		if _, ok := s.first[op]; !ok {
			s.first[op] = err.Error()
		}
		return false
	}
	return err == nil
}

// adminCall calls the admin HTTP API; ok is any 2xx.
func (s *soak) adminCall(ctx context.Context, method, path string, body any) error {
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, s.base+path, rd)
	if err != nil {
		return err
	}
	if s.admin != "" {
		req.Header.Set("Authorization", "Bearer "+s.admin)
	}
	resp, err := s.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("%s %s: HTTP %d %s", method, path, resp.StatusCode, bytes.TrimSpace(b))
	}
	return nil
}
