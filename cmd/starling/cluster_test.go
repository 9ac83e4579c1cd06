package main_test

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// TestClusterProcesses runs three nodes as separate processes routed on
// loopback: a node without the secret refuses to start, the three list
// each other in GET /v1/nodes, and a node killed with SIGKILL is gone
// from the others' lists within 5 s.
func TestClusterProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and runs three nodes")
	}
	bin := buildStarling(t)
	ports := make([]int, 3)
	for i := range ports {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ports[i] = l.Addr().(*net.TCPAddr).Port
		_ = l.Close()
	}
	args := func(i int) []string {
		var routes []string
		for j, p := range ports {
			if j != i {
				routes = append(routes, fmt.Sprintf("nats://127.0.0.1:%d", p))
			}
		}
		return []string{"--bind", "127.0.0.1:0", "--udp-port", "0", "--tcp-port", "0", "--media-bind-ip", "127.0.0.1",
			"--log-format", "json", "--node-id", fmt.Sprintf("p%d", i),
			"--cluster-listen", fmt.Sprintf("127.0.0.1:%d", ports[i]), "--cluster-routes", strings.Join(routes, ",")}
	}

	out, code := runStarling(t, bin, args(0)...)
	if code != 2 || !strings.Contains(out, "cluster.secret: required when clustered") {
		t.Fatalf("a clustered node without a secret exited %d, want 2 and a clear message:\n%s", code, out)
	}

	cmds := make([]*exec.Cmd, 3)
	addrs := make([]string, 3)
	var wg sync.WaitGroup
	for i := range cmds {
		stderr := &lineLog{}
		stderr.cond = sync.NewCond(&stderr.mu)
		cmd := exec.Command(bin, args(i)...)
		cmd.Env = append(cleanEnv(), "STARLING_CLUSTER_SECRET=process-test-secret-0123456789")
		cmd.Stderr = stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		cmds[i] = cmd
		exited := make(chan struct{})
		go func() { _ = cmd.Wait(); close(exited) }()
		t.Cleanup(func() {
			select {
			case <-exited:
			default:
				_ = cmd.Process.Signal(syscall.SIGTERM)
				select {
				case <-exited:
				case <-time.After(15 * time.Second):
					_ = cmd.Process.Kill()
					<-exited
				}
			}
			if t.Failed() {
				t.Logf("node %d's log:\n%s", i, stderr.String())
			}
		})
		wg.Add(1)
		go func(i int) { defer wg.Done(); addrs[i] = stderr.listenAddr(t, 60*time.Second) }(i)
	}
	wg.Wait()
	nodes := func(i int) int {
		resp, err := http.Get("http://" + addrs[i] + "/v1/nodes")
		if err != nil {
			return -1
		}
		defer resp.Body.Close()
		var body struct {
			Nodes []json.RawMessage `json:"nodes"`
		}
		if json.NewDecoder(resp.Body).Decode(&body) != nil {
			return -1
		}
		return len(body.Nodes)
	}
	waitFor := func(d time.Duration, what string, cond func() bool) {
		deadline := time.Now().Add(d)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("after %s: %s", d, what)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	waitFor(20*time.Second, "every node lists three nodes", func() bool { return nodes(0) == 3 && nodes(1) == 3 && nodes(2) == 3 })

	killed := time.Now()
	if err := cmds[2].Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitFor(10*time.Second, "the killed node leaves the lists", func() bool { return nodes(0) == 2 && nodes(1) == 2 })
	if d := time.Since(killed); d > 5*time.Second {
		t.Errorf("the killed node was listed for %s, want < 5 s", d)
	} else {
		t.Logf("the killed node left GET /v1/nodes after %s", d.Round(time.Millisecond))
	}
}
