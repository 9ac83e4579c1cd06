package testutil

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"sync"
	"testing"
	"time"
)

// ShutdownSlow is how long a test server's shutdown may take before the
// process's goroutine stacks are written to a file (named in the test's
// log): a shutdown that outlasted its 10 s now and then, under load, could
// not be explained after the fact. STARLING_SHUTDOWN_DUMP (a duration)
// overrides the 5 s, to catch shorter stalls while looking for one.
func ShutdownSlow() time.Duration {
	if d, err := time.ParseDuration(os.Getenv("STARLING_SHUTDOWN_DUMP")); err == nil && d > 0 {
		return d
	}
	return 5 * time.Second
}

// ShutdownWithin runs shutdown (a server's Shutdown) with a context of
// limit, dumping the goroutines if it takes longer than ShutdownSlow.
func ShutdownWithin(t testing.TB, shutdown func(context.Context) error, limit time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	start := time.Now()
	var wg sync.WaitGroup
	wg.Add(1)
	slow := time.AfterFunc(ShutdownSlow(), func() {
		defer wg.Done()
		t.Logf("shutdown still running after %v: goroutines in %s", time.Since(start).Round(time.Millisecond), DumpGoroutines(t))
	})
	err := shutdown(ctx)
	if slow.Stop() {
		wg.Done()
	}
	wg.Wait() // no log after the test has ended
	if err != nil {
		return fmt.Errorf("%w after %v", err, time.Since(start).Round(time.Millisecond))
	}
	return nil
}

// DumpGoroutines writes every goroutine's stack to a file in the temporary
// directory (it outlives the test) and returns its name.
func DumpGoroutines(t testing.TB) string {
	name := strings.NewReplacer("/", "_", " ", "_").Replace(t.Name())
	f, err := os.CreateTemp("", "starling-shutdown-"+name+"-*.txt")
	if err != nil {
		return "(not written: " + err.Error() + ")"
	}
	defer f.Close()
	_ = pprof.Lookup("goroutine").WriteTo(f, 2)
	return filepath.Clean(f.Name())
}
