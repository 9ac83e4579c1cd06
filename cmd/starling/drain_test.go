package main_test

import (
	"context"
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
	bin := buildStarling(t)
	ports := make([]int, 2)
	for i := range ports {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ports[i] = l.Addr().(*net.TCPAddr).Port
		_ = l.Close()
	}
	cmds := make([]*exec.Cmd, 2)
	exited := make([]chan struct{}, 2)
	addrs := make([]string, 2)
	for i := range cmds {
		stderr := &lineLog{}
		stderr.cond = sync.NewCond(&stderr.mu)
		cmd := exec.Command(bin, "--bind", "127.0.0.1:0", "--udp-port", "0", "--tcp-port", "0", "--media-bind-ip", "127.0.0.1",
			"--log-format", "json", "--node-id", fmt.Sprintf("d%d", i),
			"--cluster-listen", fmt.Sprintf("127.0.0.1:%d", ports[i]), "--cluster-routes", fmt.Sprintf("nats://127.0.0.1:%d", ports[1-i]))
		cmd.Env = append(cleanEnv(), "STARLING_CLUSTER_SECRET=process-test-secret-0123456789")
		cmd.Stderr = stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		cmds[i], exited[i] = cmd, make(chan struct{})
		go func(i int) { _ = cmd.Wait(); close(exited[i]) }(i)
		t.Cleanup(func() {
			select {
			case <-exited[i]:
			default:
				_ = cmd.Process.Kill()
				<-exited[i]
			}
			if t.Failed() {
				t.Logf("node %d's log:\n%s", i, stderr.String())
			}
		})
	}
	for i := range cmds {
		addrs[i] = cmds[i].Stderr.(*lineLog).listenAddr(t, 60*time.Second)
	}
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
	var mu sync.Mutex
	fromA := 0
	b.OnTrack(func(rt *client.RemoteTrack) {
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
	stop := make(chan struct{})
	defer close(stop)
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
	received := func() int { mu.Lock(); defer mu.Unlock(); return fromA }
	waitUntil := func(d time.Duration, what string, cond func() bool) {
		deadline := time.Now().Add(d)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("after %s: %s", d, what)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	waitUntil(20*time.Second, "b hears a on d0", func() bool { return received() > 25 })

	termAt := time.Now()
	if err := cmds[0].Process.Signal(syscall.SIGTERM); err != nil {
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
	waitUntil(20*time.Second, "b hears a again on d1", func() bool { return received() > before+25 })
	select {
	case <-exited[0]:
		if code := cmds[0].ProcessState.ExitCode(); code != 0 {
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
