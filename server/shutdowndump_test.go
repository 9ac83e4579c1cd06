package server_test

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

	"github.com/starling-rtc/starling/server"
)

// shutdownSlow is how long a test server's shutdown may take before the
// process's goroutine stacks are written to a file (named in the test's
// log): a shutdown that outlasted its 10 s now and then, under load, could
// not be explained after the fact. STARLING_SHUTDOWN_DUMP (a duration)
// overrides it, to catch shorter stalls while looking for one.
func shutdownSlow() time.Duration {
	if d, err := time.ParseDuration(os.Getenv("STARLING_SHUTDOWN_DUMP")); err == nil && d > 0 {
		return d
	}
	return 5 * time.Second
}

// shutdownWithin shuts srv down within limit, dumping the goroutines if it
// takes longer than shutdownSlow.
func shutdownWithin(t testing.TB, srv *server.Server, limit time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	start := time.Now()
	var wg sync.WaitGroup
	wg.Add(1)
	slow := time.AfterFunc(shutdownSlow(), func() {
		defer wg.Done()
		t.Logf("shutdown still running after %v: goroutines in %s", time.Since(start).Round(time.Millisecond), dumpGoroutines(t))
	})
	err := srv.Shutdown(ctx)
	if slow.Stop() {
		wg.Done()
	}
	wg.Wait()
	if err != nil {
		return fmt.Errorf("%w after %v", err, time.Since(start).Round(time.Millisecond))
	}
	return nil
}

// dumpGoroutines writes every goroutine's stack to a file in the temporary
// directory (it outlives the test) and returns its name.
func dumpGoroutines(t testing.TB) string {
	name := strings.NewReplacer("/", "_", " ", "_").Replace(t.Name())
	f, err := os.CreateTemp("", "starling-shutdown-"+name+"-*.txt")
	if err != nil {
		return "(not written: " + err.Error() + ")"
	}
	defer f.Close()
	_ = pprof.Lookup("goroutine").WriteTo(f, 2)
	return filepath.Clean(f.Name())
}
