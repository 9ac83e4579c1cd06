package main_test

import (
	"context"
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
	if testing.Short() {
		t.Skip("builds the binary and runs two nodes")
	}
	parallelUnlessRace(t)
	bin := buildStarling(t)
	cmds, addrs := startCluster(t, bin, freePorts(t, 2), "d", 0)
	ws := func(i int) string { return "ws://" + addrs[i] + "/v1/rtc" }
	api, err := client.LoopbackAPI()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	dial := func(name string) *client.Client {
		var c *client.Client
		deadline := time.Now().Add(30 * time.Second)
		for { // the second node may still be waiting for the first (the state store)
			c, err = client.Dial(ctx, ws(0), "drain", client.Options{Name: name, API: api, URLs: []string{ws(1)}, AutoResume: true, ResumeWindow: 20 * time.Second})
			if err == nil || time.Now().After(deadline) {
				break
			}
			time.Sleep(200 * time.Millisecond)
		}
		if err != nil {
			t.Fatalf("%s joins d0: %v", name, err)
		}
		t.Cleanup(c.Close)
		return c
	}
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
		if res := c.LastJoin(); !res.NewConnections || c.URL() != ws(1) {
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
