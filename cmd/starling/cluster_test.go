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

// TestClusterProcesses runs three nodes as separate processes routed on
// loopback: a node without the secret refuses to start, the three list
// each other in GET /v1/nodes, and a node killed with SIGKILL is gone
// from the others' lists within 5 s.
func TestClusterProcesses(t *testing.T) {
	bin := clusterBinary(t, "builds the binary and runs three nodes")
	ports := freePorts(t, 3)
	out, code := runStarling(t, bin, clusterArgs(ports, 0, "p")...)
	if code != 2 || !strings.Contains(out, "cluster.secret: required when clustered") {
		t.Fatalf("a clustered node without a secret exited %d, want 2 and a clear message:\n%s", code, out)
	}

	// An empty room closes at once (the default keeps it 10 s): the room
	// state is settled before the nodes stop (below).
	cmds, addrs := startCluster(t, bin, ports, "p", 15*time.Second, "--empty-timeout", "100ms")
	nodes := func(i int) int { return nodeCount(addrs[i]) }
	waitFor(t, 20*time.Second, "every node lists three nodes", func() bool { return nodes(0) == 3 && nodes(1) == 3 && nodes(2) == 3 })

	// a joins p2 (knowing p0 too) and publishes; b on p0 receives it.
	api, err := client.LoopbackAPI()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	ws := func(i int) string { return "ws://" + addrs[i] + "/v1/rtc" }
	a, err := client.Dial(ctx, ws(2), "failover", client.Options{Name: "a", API: api, URLs: []string{ws(0)}, AutoResume: true, ResumeWindow: 20 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := client.Dial(ctx, ws(0), "failover", client.Options{Name: "b", API: api})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	received := countPackets(b, a.ParticipantID())
	publishAudio(t, ctx, a)
	waitFor(t, 20*time.Second, "b (p0) receives a's audio from p2", func() bool { return received() > 25 })

	killed := time.Now()
	if err := cmds[2].cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the killed node leaves the lists", func() bool { return nodes(0) == 2 && nodes(1) == 2 })
	if d := time.Since(killed); d > 5*time.Second {
		t.Errorf("the killed node was listed for %s, want < 5 s", d)
	} else {
		t.Logf("the killed node left GET /v1/nodes after %s", d.Round(time.Millisecond))
	}

	// a resumed through p0 with new connections and published again; b saw
	// it stay and hears it again.
	ev, err := a.WaitEvent(ctx, client.EventResumed, nil)
	if err != nil {
		t.Fatalf("a did not resume through p0: %v", err)
	}
	var res protocol.JoinResult
	_ = json.Unmarshal(ev.Params, &res)
	if !res.NewConnections || res.Participant.ID != a.ParticipantID() {
		t.Fatalf("resume result %+v: want the same participant with newConnections", res)
	}
	t.Logf("a resumed through p0 %s after the kill", time.Since(killed).Round(time.Millisecond))
	before := received()
	waitFor(t, 20*time.Second, "b hears a again after the failover", func() bool { return received() > before+25 })
	for _, e := range b.Events() {
		if e.Method == protocol.NotifyParticipantLeft && strings.Contains(string(e.Params), a.ParticipantID()) {
			t.Fatalf("b was told a left: %s", e.Params)
		}
	}

	// a and b leave, and SIGTERM stops p1, then p0, cleanly. (Had they
	// only closed their sockets, p0, the last node, would hold them away
	// and its drain would wait out the resume window for resumes that
	// cannot happen: the cleanup used to kill it after 15 s.)
	for _, c := range []*client.Client{a, b} {
		if err := c.Leave(ctx); err != nil {
			t.Fatalf("leave: %v", err)
		}
	}
	// The leaves, the room's empty mark and its close reach the cluster's
	// room state after the leaves' answers. p1 stopped while they were
	// being written left p0 without a store majority (p2 is dead), and
	// p0's exit waited out a store wait (8 s) for each write: 8-16 s. p1
	// lists the room no more once all are written.
	waitFor(t, 20*time.Second, "the room closed in the cluster's room state", func() bool { return roomListed(addrs[1], "failover") == 0 })
	for _, i := range []int{1, 0} {
		termAt := time.Now()
		if err := cmds[i].cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		select {
		case <-cmds[i].exited:
			t.Logf("p%d exited %s after SIGTERM", i, time.Since(termAt).Round(time.Millisecond))
		case <-time.After(60 * time.Second):
			t.Fatalf("p%d did not exit after SIGTERM", i)
		}
		if code := cmds[i].cmd.ProcessState.ExitCode(); code != 0 {
			t.Errorf("p%d exited %d after SIGTERM, want 0", i, code)
		}
	}
}

// roomListed is 1 when GET /v1/rooms of the node at addr (the cluster's
// rooms, from its room state) lists room, 0 when not, -1 when the list
// could not be read.
func roomListed(addr, room string) int {
	resp, err := http.Get("http://" + addr + "/v1/rooms")
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	var body struct {
		Rooms []struct {
			Name string `json:"name"`
		} `json:"rooms"`
	}
	if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&body) != nil {
		return -1
	}
	for _, r := range body.Rooms {
		if r.Name == room {
			return 1
		}
	}
	return 0
}
