package main_test

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/starling-rtc/starling/internal/testutil"
)

// TestClusterDocCommands pastes docs/cluster.md's "Three nodes on one
// machine" block into one shell, as a reader does, with the built binary
// for `go run ./cmd/starling` and free ports for the documented ones: the
// three nodes must come up and list each other. The block ran each node in
// the foreground, so pasted whole it started node a alone, which stopped
// after 30 s without a majority, then b alone, and so on.
func TestClusterDocCommands(t *testing.T) {
	bin := clusterBinary(t, "builds the binary and runs the documented three nodes")
	doc, err := os.ReadFile("../../docs/cluster.md")
	if err != nil {
		t.Fatal(err)
	}
	block := regexp.MustCompile("(?s)## Three nodes on one machine.*?```sh\n(.*?)```").FindSubmatch(doc)
	if block == nil {
		t.Fatal(`docs/cluster.md has no sh block under "## Three nodes on one machine"`)
	}
	script := string(block[1])
	if n := strings.Count(script, "go run ./cmd/starling"); n != 3 {
		t.Fatalf("the block runs %d nodes, want 3:\n%s", n, script)
	}
	script = strings.ReplaceAll(script, "go run ./cmd/starling", bin)
	// The twelve ports are picked free and released; another test process
	// (the machine runs several) may take one before its node binds it, and
	// that node stops with "cannot start" ("bind: address already in use",
	// seen under load): the block runs again on fresh ports, as the cluster
	// harnesses do.
	for attempt := 1; ; attempt++ {
		taken := runClusterDocBlock(t, script, attempt == 3)
		if !taken {
			return
		}
		t.Logf("attempt %d: a node could not bind its port (taken by another process); again on fresh ports", attempt)
	}
}

// runClusterDocBlock runs the block with its documented ports (79xx)
// replaced by free ones, the same everywhere each appears, and waits for
// the three nodes to list each other. It reports true, with the nodes
// stopped, if a node could not start (a port taken meanwhile) and last is
// false; any other failure fails the test.
func runClusterDocBlock(t *testing.T, script string, last bool) (taken bool) {
	t.Helper()
	ports := map[string]string{}
	script = regexp.MustCompile(`\b79\d\d\b`).ReplaceAllStringFunc(script, func(p string) string {
		if _, ok := ports[p]; !ok {
			ports[p] = fmt.Sprint(freePorts(t, 1)[0])
		}
		return ports[p]
	})
	var addrs []string
	for _, p := range []string{"7900", "7910", "7920"} {
		if ports[p] == "" {
			t.Fatalf("the block does not use the documented HTTP port %s:\n%s", p, script)
		}
		addrs = append(addrs, "127.0.0.1:"+ports[p])
	}

	sh := exec.Command("sh", "-c", script)
	sh.Env = cleanEnv()
	sh.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // the nodes outlive sh when backgrounded
	out := newLineLog()
	sh.Stdout, sh.Stderr = out, out
	if err := sh.Start(); err != nil {
		t.Fatal(err)
	}
	pgid := sh.Process.Pid
	shDone := make(chan struct{})
	go func() { _ = sh.Wait(); close(shDone) }()
	stop := func() {
		stopGroup(pgid)
		<-shDone
	}
	up := func() bool {
		return nodeCount(addrs[0]) == 3 && nodeCount(addrs[1]) == 3 && nodeCount(addrs[2]) == 3
	}
	cannotStart := func() bool { return strings.Contains(out.String(), `msg="cannot start"`) }
	ok := testutil.Poll(60*time.Second, func() bool { return up() || (!last && cannotStart()) })
	if ok && !up() {
		stop()
		return true
	}
	t.Cleanup(func() {
		stop()
		if t.Failed() {
			t.Logf("the nodes' output:\n%s", out.String())
		}
	})
	if !ok {
		t.Fatalf("after 1m0s: the three nodes started by the documented block list each other")
	}
	return false
}

// stopGroup stops every process of the group: SIGTERM, then SIGKILL for
// those still there after 20 s. The nodes are not this process's children
// (sh started them in the background and exited), so there is no exit to
// wait on: the group is polled until it is empty.
func stopGroup(pgid int) {
	_ = syscall.Kill(-pgid, syscall.SIGTERM)
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if err := syscall.Kill(-pgid, 0); errors.Is(err, syscall.ESRCH) {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
}
