package main_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/starling-rtc/starling/client"
	"github.com/starling-rtc/starling/protocol"
)

// SIGTERM on a cluster node (a separate process) drains it: its clients
// are asked to reconnect, resume through another node with new
// connections, hear each other again there, nobody is told anyone left,
// and the process exits 0.
func TestClusterSIGTERMDrains(t *testing.T) {
	bin := clusterBinary(t, "builds the binary and runs two nodes")
	cmds, addrs := startCluster(t, bin, freePorts(t, 2), "d", 0)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	dial := func(name string) *client.Client { return dialRetrying(t, ctx, addrs, "drain", name) }
	a, b := dial("a"), dial("b")
	received := countPackets(b, "")
	publishAudio(t, ctx, a)
	waitFor(t, 20*time.Second, "b hears a on d0", func() bool { return received() > 25 })

	termAt := time.Now()
	if err := cmds[0].cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	for _, c := range []*client.Client{a, b} {
		if _, err := c.WaitEvent(ctx, client.EventResumed, nil); err != nil {
			t.Fatalf("%s did not resume through d1: %v", c.LastJoin().Participant.Name, err)
		}
		if res := c.LastJoin(); !res.NewConnections || c.URL() != "ws://"+addrs[1]+"/v1/rtc" {
			t.Fatalf("%s's resume: newConnections %v through %s, want true through d1", res.Participant.Name, res.NewConnections, c.URL())
		}
	}
	t.Logf("both resumed through d1 %s after SIGTERM", time.Since(termAt).Round(time.Millisecond))
	before := received()
	waitFor(t, 20*time.Second, "b hears a again on d1", func() bool { return received() > before+25 })
	select {
	case <-cmds[0].exited:
		if code := cmds[0].cmd.ProcessState.ExitCode(); code != 0 {
			t.Errorf("the drained node exited %d, want 0", code)
		}
	case <-time.After(40 * time.Second):
		t.Fatal("the drained node did not exit")
	}
	for _, c := range []*client.Client{a, b} {
		for _, e := range c.Events() {
			if e.Method == protocol.NotifyParticipantLeft || (e.Method == protocol.MethodLeave && !strings.Contains(string(e.Params), protocol.ReasonServerShutdown)) {
				t.Errorf("%s was told: %s %s", c.LastJoin().Participant.Name, e.Method, e.Params)
			}
		}
	}
}

// SIGTERM on the last live node of a cluster (the other one stopped
// before) does not drain: there is no node to resume through, so waiting
// out the resume window would only hold its clients and its exit. Its
// client gets the usual `leave {reason: serverShutdown}`, never
// `reconnect`, and the process exits 0.
func TestClusterSIGTERMLastNode(t *testing.T) {
	bin := clusterBinary(t, "builds the binary and runs two nodes") // its own two processes and ports; every step awaited
	cmds, addrs := startCluster(t, bin, freePorts(t, 2), "l", 0)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	a := dialRetrying(t, ctx, addrs, "last", "a")

	// l1 stops first (it drains, with nobody to hand over) and l0 sees it go.
	if err := cmds[1].cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-cmds[1].exited:
	case <-ctx.Done():
		t.Fatal("l1 did not exit")
	}
	waitFor(t, 20*time.Second, "l0 lists itself alone", func() bool { return nodeCount(addrs[0]) == 1 })

	termAt := time.Now()
	if err := cmds[0].cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-cmds[0].exited:
		if code := cmds[0].cmd.ProcessState.ExitCode(); code != 0 {
			t.Errorf("the last node exited %d, want 0", code)
		}
	case <-ctx.Done():
		t.Fatal("the last node did not exit")
	}
	t.Logf("the last node exited %s after SIGTERM", time.Since(termAt).Round(time.Millisecond))
	waitFor(t, 20*time.Second, "a is told the server shut down", func() bool {
		for _, e := range a.Events() {
			if e.Method == protocol.MethodLeave && strings.Contains(string(e.Params), protocol.ReasonServerShutdown) {
				return true
			}
		}
		return false
	})
	for _, e := range a.Events() {
		if e.Method == protocol.NotifyReconnect {
			t.Fatalf("a was asked to resume elsewhere though no other node was left: %s", e.Params)
		}
	}
}

// clusterBinary skips a test that runs nodes as processes under -short,
// runs it in parallel unless under -race, and returns the binary.
func clusterBinary(t *testing.T, why string) string {
	t.Helper()
	if testing.Short() {
		t.Skip(why)
	}
	parallelUnlessRace(t)
	return buildStarling(t)
}

// dialRetrying joins room through the node at addrs[0], to resume through
// addrs[1], retrying for 30 s: the second node may still be waiting for
// the first (the state store). The client closes when the test ends.
func dialRetrying(t *testing.T, ctx context.Context, addrs []string, room, name string) *client.Client {
	t.Helper()
	api, err := client.LoopbackAPI()
	if err != nil {
		t.Fatal(err)
	}
	ws := func(i int) string { return "ws://" + addrs[i] + "/v1/rtc" }
	var c *client.Client
	deadline := time.Now().Add(30 * time.Second)
	for {
		c, err = client.Dial(ctx, ws(0), room, client.Options{Name: name, API: api, URLs: []string{ws(1)}, AutoResume: true, ResumeWindow: 20 * time.Second})
		if err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("%s joins %s through %s: %v", name, room, addrs[0], err)
	}
	t.Cleanup(c.Close)
	return c
}

// nodeCount is the number of nodes GET /v1/nodes lists at addr (-1 when it
// does not answer).
func nodeCount(addr string) int {
	resp, err := http.Get("http://" + addr + "/v1/nodes")
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
