package main_test

import (
	"context"
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

	"github.com/pion/webrtc/v4"
	"github.com/pion/webrtc/v4/pkg/media"
	"github.com/starling-rtc/starling/client"
	"github.com/starling-rtc/starling/protocol"
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
	var mu sync.Mutex
	fromA := 0
	b.OnTrack(func(rt *client.RemoteTrack) {
		if rt.ParticipantID != a.ParticipantID() {
			return
		}
		go func() {
			for {
				if _, _, err := rt.Track.ReadRTP(); err != nil {
					return
				}
				mu.Lock()
				fromA++
				mu.Unlock()
			}
		}()
	})
	audio, err := webrtc.NewTrackLocalStaticSample(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2}, "mic", "a")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Publish(ctx, client.LocalTrack{Track: audio, Source: protocol.SourceMicrophone}); err != nil {
		t.Fatal(err)
	}
	stopAudio := make(chan struct{})
	defer close(stopAudio)
	go func() {
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stopAudio:
				return
			case <-tick.C:
				_ = audio.WriteSample(media.Sample{Data: []byte{0x78, 1, 2, 3}, Duration: 20 * time.Millisecond})
			}
		}
	}()
	received := func() int { mu.Lock(); defer mu.Unlock(); return fromA }
	waitFor(20*time.Second, "b (p0) receives a's audio from p2", func() bool { return received() > 25 })

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
	waitFor(20*time.Second, "b hears a again after the failover", func() bool { return received() > before+25 })
	for _, e := range b.Events() {
		if e.Method == protocol.NotifyParticipantLeft && strings.Contains(string(e.Params), a.ParticipantID()) {
			t.Fatalf("b was told a left: %s", e.Params)
		}
	}
}
