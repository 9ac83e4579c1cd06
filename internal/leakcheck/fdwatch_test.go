package leakcheck

import (
	"io"
	"os"
	"strings"
	"testing"
)

// TestFDWatchReports: past its threshold the watch writes the open files
// by kind and the goroutines, once.
func TestFDWatchReports(t *testing.T) {
	if _, err := os.Stat("/proc/self/fd"); err != nil {
		t.Skip("no /proc/self/fd here")
	}
	r, wr, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	saved := os.Stderr
	os.Stderr = wr
	w := &fdWatch{stop: make(chan struct{}), done: make(chan struct{})}
	go w.run(1)
	<-w.done // it returns after its one report
	os.Stderr = saved
	wr.Close()
	out, _ := io.ReadAll(r)
	for _, want := range []string{"open files (half the limit): by kind", "pipe", "leakcheck: goroutines:", "TestFDWatchReports"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("the report lacks %q:\n%s", want, out)
		}
	}
	w.Stop()
}
