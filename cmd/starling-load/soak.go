package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"sync"

	"github.com/starling-rtc/starling/bench/loadgen"
)

// errorLines passes a started server's log through and counts its
// error-level lines (text or JSON log format).
type errorLines struct {
	w    io.Writer
	mu   sync.Mutex
	part []byte
	n    int
}

func (e *errorLines) Write(p []byte) (int, error) {
	e.mu.Lock()
	e.part = append(e.part, p...)
	for {
		i := bytes.IndexByte(e.part, '\n')
		if i < 0 {
			break
		}
		line := e.part[:i]
		if bytes.Contains(line, []byte("level=ERROR")) || bytes.Contains(line, []byte(`"level":"ERROR"`)) {
			e.n++
		}
		e.part = e.part[i+1:]
	}
	e.mu.Unlock()
	return e.w.Write(p)
}

// count is the number of error lines so far (nil: not counted).
func (e *errorLines) count() int {
	if e == nil {
		return 0
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.n
}

// runSoak runs loadgen.Soak and prints its samples and verdict.
func runSoak(ctx context.Context, cfg loadgen.SoakConfig, jsonPath string, stdout, stderr io.Writer) int {
	res, err := loadgen.Soak(ctx, cfg)
	if err != nil {
		fmt.Fprintln(stderr, "starling-load:", err)
		return 1
	}
	writeSoak(stdout, res)
	if jsonPath != "" {
		b, _ := json.MarshalIndent(res, "", "  ")
		b = append(b, '\n')
		if jsonPath == "-" {
			_, _ = stdout.Write(b)
		} else if err := os.WriteFile(jsonPath, b, 0o644); err != nil {
			fmt.Fprintln(stderr, "starling-load:", err)
			return 1
		}
	}
	if !res.OK() {
		fmt.Fprintln(stderr, "starling-load: the soak found problems:\n  "+strings.Join(res.Problems, "\n  "))
		return 5
	}
	return 0
}

func writeSoak(w io.Writer, r *loadgen.SoakResult) {
	fmt.Fprintf(w, "\n%-8s %7s %5s %6s %6s %6s %4s %10s %5s %8s %8s\n", "phase", "t (s)", "rooms", "parts", "tracks", "subs", "recs", "goroutines", "fds", "rss MB", "heap MB")
	for _, s := range r.Samples {
		fmt.Fprintf(w, "%-8s %7.0f %5.0f %6.0f %6.0f %6.0f %4.0f %10.0f %5.0f %8.1f %8.1f\n", s.Phase, s.At.Seconds(),
			s.Rooms, s.Participants, s.Tracks, s.Subscriptions, s.Recordings, s.Goroutines, s.OpenFDs, s.RSSMB, s.HeapMB)
	}
	ops := make([]string, 0, len(r.Ops))
	for op, n := range r.Ops {
		ops = append(ops, fmt.Sprintf("%s %d", op, n))
	}
	sort.Strings(ops)
	fmt.Fprintf(w, "\noperations: %s\n", strings.Join(ops, ", "))
	fmt.Fprintf(w, "data messages: %d sent, %d received, %d lost; server errors: %d\n", r.DataSent, r.DataReceived, r.DataLost, r.ServerErrors)
	if r.IdleAfter >= 0 {
		fmt.Fprintf(w, "idle %.1f s after the churn: every gauge at its idle value\n", r.IdleAfter.Seconds())
	}
	for i, inc := range r.Incidents {
		fmt.Fprintf(w, "incident %d: room %s, publisher %s, subscriber %s\n", i+1, inc.Room, inc.Pub, inc.Sub)
		if inc.Cause != "" {
			fmt.Fprintf(w, "  cause: %s\n", inc.Cause)
		}
		for _, l := range inc.Timeline {
			fmt.Fprintf(w, "  %s\n", l)
		}
	}
	if r.OK() {
		fmt.Fprintln(w, "soak: OK")
	} else {
		fmt.Fprintf(w, "soak: %d problem(s): %s\n", len(r.Problems), strings.Join(r.Problems, "; "))
	}
}
