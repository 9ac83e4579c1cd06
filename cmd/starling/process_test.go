package main_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"
	"github.com/pion/webrtc/v4/pkg/media"
	"github.com/starling-rtc/starling/client"
	"github.com/starling-rtc/starling/internal/testutil"
	"github.com/starling-rtc/starling/protocol"
)

// node is one running starling process started by startNode.
type node struct {
	cmd    *exec.Cmd
	log    *lineLog
	exited chan struct{} // closed once the process has exited; err is then set
	err    error         // what cmd.Wait returned
}

func newLineLog() *lineLog {
	l := &lineLog{}
	l.cond = sync.NewCond(&l.mu)
	return l
}

// startNode starts the binary with args and env, collecting its stderr. At
// cleanup a node still running gets SIGTERM and SIGKILL after grace (a
// zero grace kills it at once), and its log is printed if the test failed.
func startNode(t *testing.T, bin, name string, env []string, grace time.Duration, args ...string) *node {
	t.Helper()
	n := &node{cmd: exec.Command(bin, args...), log: newLineLog(), exited: make(chan struct{})}
	n.cmd.Env = env
	n.cmd.Stderr = n.log
	if err := n.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { n.err = n.cmd.Wait(); close(n.exited) }()
	t.Cleanup(func() {
		select {
		case <-n.exited:
		default:
			if grace > 0 {
				_ = n.cmd.Process.Signal(syscall.SIGTERM)
			}
			select {
			case <-n.exited:
			case <-time.After(grace):
				_ = n.cmd.Process.Kill()
				<-n.exited
			}
		}
		if t.Failed() {
			t.Logf("%s's log:\n%s", name, n.log.String())
		}
	})
	return n
}

// freePorts returns n TCP ports that were free on loopback a moment ago.
func freePorts(t *testing.T, n int) []int {
	t.Helper()
	ports := make([]int, n)
	for i := range ports {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ports[i] = l.Addr().(*net.TCPAddr).Port
		_ = l.Close()
	}
	return ports
}

// processSecret is the secret of the clusters this process starts, its
// own: several test processes start clusters at once on ports picked free
// and released, and a node of another process that still dials a port one
// of these nodes now holds must be refused, not routed (with one secret for
// every process, two clusters merged, or a start failed on a duplicate
// node id; the cluster package's testSecret).
var processSecret = func() string {
	b := make([]byte, 12)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return "process-test-secret-" + hex.EncodeToString(b)
}()

// clusterArgs are the flags of cluster node i (id idPrefix+i) listening
// on ports[i] for the cluster and routed to every other port.
func clusterArgs(ports []int, i int, idPrefix string) []string {
	var routes []string
	for j, p := range ports {
		if j != i {
			routes = append(routes, fmt.Sprintf("nats://127.0.0.1:%d", p))
		}
	}
	return []string{"--bind", "127.0.0.1:0", "--udp-port", "0", "--tcp-port", "0", "--media-bind-ip", "127.0.0.1",
		"--log-format", "json", "--node-id", fmt.Sprintf("%s%d", idPrefix, i),
		"--cluster-listen", fmt.Sprintf("127.0.0.1:%d", ports[i]), "--cluster-routes", strings.Join(routes, ",")}
}

// startCluster starts one node per port with a shared secret and returns
// them with their HTTP addresses once every one has logged it. A node that
// exits before that (a port taken meanwhile by another test process: its
// cluster port, or a route to a port that a foreign cluster now holds,
// which refuses the secret) makes the cluster start again on fresh ports,
// as the cluster package's harness does.
func startCluster(t *testing.T, bin string, ports []int, idPrefix string, grace time.Duration, extra ...string) ([]*node, []string) {
	t.Helper()
	for attempt := 1; ; attempt++ {
		nodes := make([]*node, len(ports))
		addrs := make([]string, len(ports))
		for i := range nodes {
			nodes[i] = startNode(t, bin, fmt.Sprintf("node %d", i), append(cleanEnv(), "STARLING_CLUSTER_SECRET="+processSecret),
				grace, append(clusterArgs(ports, i, idPrefix), extra...)...)
		}
		failed := -1
		for i, n := range nodes {
			if addrs[i] = n.waitAddr(60 * time.Second); addrs[i] == "" {
				failed = i
				break
			}
		}
		if failed < 0 {
			return nodes, addrs
		}
		for _, n := range nodes {
			n.kill()
		}
		if attempt == 3 {
			t.Fatalf("node %d did not start (attempt %d):\n%s", failed, attempt, nodes[failed].log.String())
		}
		t.Logf("node %d did not start (a port taken meanwhile?), starting again on fresh ports:\n%s", failed, nodes[failed].log.String())
		ports = freePorts(t, len(ports))
	}
}

// waitAddr waits for the node's HTTP address: "" if the process exited
// first or d passed.
func (n *node) waitAddr(d time.Duration) string {
	deadline := time.After(d)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		if a := n.log.addr(); a != "" {
			return a
		}
		select {
		case <-n.exited:
			return n.log.addr()
		case <-deadline:
			return ""
		case <-tick.C:
		}
	}
}

// kill ends the process at once and waits for it.
func (n *node) kill() {
	_ = n.cmd.Process.Kill()
	<-n.exited
}

// waitFor polls cond until it holds, failing the test after d.
var waitFor = testutil.Eventually

// countPackets counts the RTP packets c receives from the participant
// from ("" for anyone) and returns a reader of the count.
func countPackets(c *client.Client, from string) func() int {
	var mu sync.Mutex
	n := 0
	c.OnTrack(func(rt *client.RemoteTrack) {
		if from != "" && rt.ParticipantID != from {
			return
		}
		go func() {
			for {
				if _, _, err := rt.Track.ReadRTP(); err != nil {
					return
				}
				mu.Lock()
				n++
				mu.Unlock()
			}
		}()
	})
	return func() int { mu.Lock(); defer mu.Unlock(); return n }
}

// publishAudio publishes a microphone track from c and writes a packet to
// it every 20 ms until the test ends.
func publishAudio(t *testing.T, ctx context.Context, c *client.Client) {
	t.Helper()
	audio, err := webrtc.NewTrackLocalStaticSample(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2}, "mic", "a")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Publish(ctx, client.LocalTrack{Track: audio, Source: protocol.SourceMicrophone}); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	t.Cleanup(func() { close(stop) })
	go func() {
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				_ = audio.WriteSample(media.Sample{Data: []byte{0x78, 1, 2, 3}, Duration: 20 * time.Millisecond})
			}
		}
	}()
}
