package leakcheck

import (
	"fmt"
	"os"
	"runtime/pprof"
	"sort"
	"strings"
	"syscall"
	"time"
)

// fdWatch reports, once, a test process whose open files pass half its
// limit: what they are (sockets by protocol, and TCP ones by state and far
// address: sockets.go; pipes, files...) and every goroutine, so
// the tests failing next with "too many open files" (seen once: a loaded
// run of the cluster package, 20,000 files within 23 s, against ~640 at
// its peak idle) can be traced to what opened them. It reads /proc
// (Linux); elsewhere it does nothing. Stop ends it.
type fdWatch struct{ stop, done chan struct{} }

func startFDWatch() *fdWatch {
	w := &fdWatch{stop: make(chan struct{}), done: make(chan struct{})}
	var lim syscall.Rlimit
	if _, err := os.Stat("/proc/self/fd"); err != nil || syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim) != nil || lim.Cur == 0 {
		close(w.done)
		return w
	}
	go w.run(int(lim.Cur / 2))
	return w
}

func (w *fdWatch) run(threshold int) {
	defer close(w.done)
	t := time.NewTicker(500 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-w.stop:
			return
		case <-t.C:
		}
		ents, err := os.ReadDir("/proc/self/fd")
		if err != nil || len(ents) < threshold {
			continue
		}
		kinds := map[string]int{}
		sockets := socketKinds()
		for _, e := range ents {
			target, err := os.Readlink("/proc/self/fd/" + e.Name())
			if err != nil {
				continue
			}
			kind, _, _ := strings.Cut(target, ":")
			if strings.HasPrefix(target, "/") {
				kind = "file " + target
			} else if k := sockets[socketInode(target)]; k != "" {
				kind = k
			}
			kinds[kind]++
		}
		var lines []string
		for k, n := range kinds {
			lines = append(lines, fmt.Sprintf("%6d %s", n, k))
		}
		sort.Sort(sort.Reverse(sort.StringSlice(lines)))
		if len(lines) > 30 {
			lines = lines[:30]
		}
		fmt.Fprintf(os.Stderr, "leakcheck: %d open files (half the limit): by kind\n%s\nleakcheck: goroutines:\n", len(ents), strings.Join(lines, "\n"))
		_ = pprof.Lookup("goroutine").WriteTo(os.Stderr, 1)
		return
	}
}

// Stop ends the watch and waits for it.
func (w *fdWatch) Stop() {
	select {
	case <-w.done:
	default:
		close(w.stop)
		<-w.done
	}
}
