package browsertest

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/starling-rtc/starling/internal/testutil"
	"github.com/starling-rtc/starling/protocol"
)

// TestClusterFailoverInChromium: three Starling processes routed into one
// cluster. The app opened with ?servers=n0,n1 joins through n0 and
// publishes; a viewer page on n2 watches it through the relay. n0 is
// killed with SIGKILL: the page resumes through n1 as the same participant
// on new connections (join result newConnections) and publishes again; the
// viewer never sees it leave and decodes its video again.
func TestClusterFailoverInChromium(t *testing.T) {
	parallelUnlessRace(t)
	clusterFailoverInChromium(t, false)
}

// TestClusterDrainInChromium: the same with n0 sent SIGTERM: it drains,
// the JS library gets `reconnect {reason: "drain"}` and resumes through
// n1 on new connections, the viewer decodes the presenter again and never
// sees it leave, and n0 exits 0 once nobody is left on it.
func TestClusterDrainInChromium(t *testing.T) {
	parallelUnlessRace(t)
	clusterFailoverInChromium(t, true)
}

// clusterFailoverInChromium runs beside the package's other parallel tests:
// it mostly waits on its own three processes and judges no timing.
func clusterFailoverInChromium(t *testing.T, drain bool) {
	if testing.Short() {
		t.Skip("builds the binary and runs three nodes")
	}
	b := launchChromium(t)
	bin := buildStarlingBinary(t)
	nodes := startProcessCluster(t, bin, 3)
	const room = "browser-cluster-failover"

	viewer := b.newPage("viewer")
	vicID := joinRoom(viewer, nodes[2].base(), room, "Vic")

	presenter := b.newPage("presenter")
	servers := nodes[0].ws() + "," + nodes[1].ws()
	presenter.do(15*time.Second, chromedp.Navigate(fmt.Sprintf("%s/r/%s?name=Ann&autojoin=1&servers=%s",
		nodes[1].base(), room, url.QueryEscape(servers))))
	waitFor(presenter, "joined through n0", 15*time.Second, `document.body.dataset.status`, func(s string) bool { return s == "joined" })
	var first struct {
		ID  string `json:"id"`
		URL string `json:"url"`
	}
	// The notifications the library handles itself (reconnect) are not
	// events: watch them where they arrive.
	presenter.mustEval(`window.__reconnected = []; window.starling.client.on('reconnected', (d) => window.__reconnected.push(d));
	  window.__notified = []; { const c = window.starling.client, on = c._onNotification.bind(c);
	    c._onNotification = (m, p) => { window.__notified.push({method: m, params: p}); return on(m, p); }; }
	  ({id: window.starling.state.participantId, url: window.starling.client.url})`, &first)
	if first.URL != nodes[0].ws() {
		t.Fatalf("the page joined through %s, want n0 (%s)", first.URL, nodes[0].ws())
	}
	waitForTile(viewer, first.ID, 15*time.Second)
	before := waitForMedia(viewer, 30*time.Second)

	var w *watcher
	if drain {
		w = newWatcher(t, b, nodes, room, servers, vicID)
	}
	viewer.mustEval(`window.__left = []; window.starling.client.on('participantLeft', (d) => window.__left.push(d.participantId));
	  window.__ended = []; window.starling.client.on('trackUnpublished', (d) => window.__ended.push(d.participantId)); true`, nil)
	killed := time.Now()
	if drain {
		_ = nodes[0].cmd.Process.Signal(syscall.SIGTERM)
	} else {
		nodes[0].kill()
	}
	type state struct {
		Status      string            `json:"status"`
		ID          string            `json:"id"`
		URL         string            `json:"url"`
		Reconnected []json.RawMessage `json:"reconnected"`
	}
	st, _ := waitFor(presenter, "back in the room through n1", 30*time.Second,
		`({status: document.body.dataset.status, id: window.starling.state.participantId, url: window.starling.client.url,
		  reconnected: window.__reconnected})`,
		func(s state) bool { return s.Status == "joined" && s.URL == nodes[1].ws() && len(s.Reconnected) > 0 })
	t.Logf("the presenter is back through n1 %v after n0 was %s: %s", time.Since(killed).Round(time.Millisecond),
		map[bool]string{true: "sent SIGTERM", false: "killed"}[drain], st.Reconnected[0])
	var rc struct {
		Resumed        bool `json:"resumed"`
		NewConnections bool `json:"newConnections"`
	}
	if err := json.Unmarshal(st.Reconnected[0], &rc); err != nil {
		t.Fatal(err)
	}
	if !rc.Resumed || !rc.NewConnections || st.ID != first.ID {
		t.Fatalf("after the failover: %s as %s (was %s); want a resume of the same participant on new connections",
			st.Reconnected[0], st.ID, first.ID)
	}
	waitFor(viewer, "the viewer decodes the presenter's video again", 30*time.Second, inboundJS,
		func(s inbound) bool { return s.FramesDecoded > before.FramesDecoded+10 })
	if tl := waitForTile(viewer, first.ID, time.Second); tl.Name != "Ann" {
		t.Errorf("the viewer's tile of the presenter after the failover: %+v", tl)
	}
	var left []string
	viewer.mustEval(`window.__left`, &left)
	for _, id := range left {
		if id == first.ID {
			t.Errorf("the viewer was told the presenter left")
		}
	}
	if drain {
		// Make-before-break: the presenter's tracks went on under the same
		// ids through n1 (docs/cluster-failover.md "Drain (SIGTERM)").
		var ended []string
		viewer.mustEval(`window.__ended`, &ended)
		for _, id := range ended {
			if id == first.ID {
				t.Errorf("the viewer was told a track of the presenter ended")
			}
		}
		select {
		case <-nodes[0].exited:
		case <-time.After(40 * time.Second):
			t.Fatal("n0 did not exit after its drain")
		}
		if code := nodes[0].cmd.ProcessState.ExitCode(); code != 0 {
			t.Errorf("n0 exited with %d after SIGTERM, want 0", code)
		}
		nodes[0].mu.Lock()
		drained := strings.Contains(nodes[0].log.String(), "draining")
		nodes[0].mu.Unlock()
		if !drained {
			t.Error("n0's log does not say it drained")
		}
		var notified []struct {
			Method string                   `json:"method"`
			Params protocol.ReconnectParams `json:"params"`
		}
		presenter.mustEval(`window.__notified.filter((n) => n.method === 'reconnect')`, &notified)
		if len(notified) != 1 || notified[0].Params.Reason != protocol.ReasonDrain {
			t.Errorf("the presenter page's reconnect notifications: %+v, want one with reason drain", notified)
		}
		w.keptItsChoice(t, nodes[1].ws())
		viewer.screenshot("cluster-drain-viewer-chromium.png")
		return
	}
	viewer.screenshot("cluster-failover-viewer-chromium.png")
}

// watcher is a page on n0 (knowing n1 too) that turned off the viewer's
// audio (unsubscribe): after the drain moves it to n1, it must still not
// receive that audio, though it receives the viewer's video (the JS
// library re-sends its subscriptions with the resume).
type watcher struct {
	p                  *page
	vicAudio, vicVideo string
}

func newWatcher(t *testing.T, b *browser, nodes []*processNode, room, servers, vicID string) *watcher {
	t.Helper()
	w := &watcher{p: b.newPage("watcher")}
	w.p.do(15*time.Second, chromedp.Navigate(fmt.Sprintf("%s/r/%s?name=Wat&autojoin=1&servers=%s",
		nodes[1].base(), room, url.QueryEscape(servers))))
	waitFor(w.p, "the watcher joined through n0", 15*time.Second, `window.starling.client?.url ?? ''`, func(s string) bool { return s == nodes[0].ws() })
	var ids struct {
		Audio string `json:"audio"`
		Video string `json:"video"`
	}
	ids, _ = waitFor(w.p, "the watcher receives the viewer's audio and video", 30*time.Second, fmt.Sprintf(`(() => {
	    const c = window.starling.client, t = c.participants.get(%q)?.tracks ?? [];
	    const id = (k) => t.find((x) => x.kind === k && c.remoteTracks.has(x.id))?.id ?? '';
	    return {audio: id('audio'), video: id('video')}; })()`, vicID),
		func(v struct {
			Audio string `json:"audio"`
			Video string `json:"video"`
		}) bool {
			return v.Audio != "" && v.Video != ""
		})
	w.vicAudio, w.vicVideo = ids.Audio, ids.Video
	w.p.mustEval(fmt.Sprintf(`window.starling.client.unsubscribe([%q]).then(() => true)`, w.vicAudio), nil)
	waitFor(w.p, "the viewer's audio is off", 10*time.Second, fmt.Sprintf(`window.starling.client.remoteTracks.has(%q)`, w.vicAudio),
		func(has bool) bool { return !has })
	return w
}

func (w *watcher) keptItsChoice(t *testing.T, n1 string) {
	t.Helper()
	type state struct {
		URL    string   `json:"url"`
		Tracks []string `json:"tracks"`
	}
	st, _ := waitFor(w.p, "the watcher is back through n1 with the viewer's video", 30*time.Second,
		`({url: window.starling.client.url, tracks: [...window.starling.client.remoteTracks.keys()]})`,
		func(s state) bool { return s.URL == n1 && slices.Contains(s.Tracks, w.vicVideo) })
	if slices.Contains(st.Tracks, w.vicAudio) {
		t.Errorf("after the drain the watcher receives the viewer's audio it had turned off (tracks %v)", st.Tracks)
	}
}

// buildStarlingBinary returns the starling binary of the build cache
// (testutil.StarlingBinary), built first if the source changed.
func buildStarlingBinary(t *testing.T) string {
	t.Helper()
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skipf("no go tool to build the binary: %v", err)
	}
	built.once.Do(func() { built.bin, built.err = testutil.StarlingBinary(goTool, ".") })
	if built.err != nil {
		t.Fatal(built.err)
	}
	return built.bin
}

// built is the starling binary, found once for the package's tests (the
// build cache's: dir stays empty, TestMain removes nothing).
var built struct {
	once     sync.Once
	dir, bin string
	err      error
}

func removeBuiltBinary() {
	if built.dir != "" {
		_ = os.RemoveAll(built.dir)
	}
}

// processNode is one Starling process of a test cluster.
type processNode struct {
	addr   string
	cmd    *exec.Cmd
	exited chan struct{}
	log    *strings.Builder
	mu     *sync.Mutex
}

func (n *processNode) base() string { return "http://" + n.addr }
func (n *processNode) ws() string   { return "ws://" + n.addr + "/v1/rtc" }

func (n *processNode) kill() {
	_ = n.cmd.Process.Signal(syscall.SIGKILL)
	<-n.exited
}

// lockedWriter collects a process's output.
type lockedWriter struct {
	mu *sync.Mutex
	b  *strings.Builder
}

func (w lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

// startProcessCluster starts n routed nodes as processes on loopback and
// waits until each lists all n in GET /v1/nodes.
func startProcessCluster(t *testing.T, bin string, n int) []*processNode {
	t.Helper()
	// Free ports are picked and then released: another test process (the
	// cluster package's nodes run beside this one) may take one before a
	// node binds it. A node that exits before the cluster forms is such a
	// start: all of them stop and start again on fresh ports.
	for attempt := 1; ; attempt++ {
		nodes, ok := startProcessClusterOn(t, bin, n, freeTCPPorts(t, 2*n), attempt == 3)
		if ok {
			return nodes
		}
		t.Logf("a node exited before the cluster formed (a port taken meanwhile?): starting again on fresh ports")
	}
}

// startProcessClusterOn starts n nodes on ports (HTTP, then cluster
// routes) and waits until each lists all n. ok is false when a node exited
// first (the others are killed), unless last: then the test fails.
func startProcessClusterOn(t *testing.T, bin string, n int, ports []int, last bool) (_ []*processNode, ok bool) {
	t.Helper()
	var nodes []*processNode
	for i := 0; i < n; i++ {
		var routes []string
		for j := 0; j < n; j++ {
			if j != i {
				routes = append(routes, fmt.Sprintf("nats://127.0.0.1:%d", ports[n+j]))
			}
		}
		node := &processNode{addr: fmt.Sprintf("127.0.0.1:%d", ports[i]), exited: make(chan struct{}), log: &strings.Builder{}, mu: &sync.Mutex{}}
		node.cmd = exec.Command(bin, "--bind", node.addr, "--udp-port", "0", "--tcp-port", "0", "--media-bind-ip", "127.0.0.1",
			"--allowed-origin", "*", "--node-id", fmt.Sprintf("n%d", i),
			"--cluster-listen", fmt.Sprintf("127.0.0.1:%d", ports[n+i]), "--cluster-routes", strings.Join(routes, ","))
		for _, kv := range os.Environ() {
			if !strings.HasPrefix(kv, "STARLING_") {
				node.cmd.Env = append(node.cmd.Env, kv)
			}
		}
		node.cmd.Env = append(node.cmd.Env, "STARLING_CLUSTER_SECRET=browser-test-secret-0123456789")
		node.cmd.Stdout = lockedWriter{node.mu, node.log}
		node.cmd.Stderr = lockedWriter{node.mu, node.log}
		if err := node.cmd.Start(); err != nil {
			t.Fatal(err)
		}
		go func() { _ = node.cmd.Wait(); close(node.exited) }()
		t.Cleanup(func() {
			select {
			case <-node.exited:
			default:
				_ = node.cmd.Process.Signal(syscall.SIGTERM)
				select {
				case <-node.exited:
				case <-time.After(15 * time.Second):
					node.kill()
				}
			}
			if t.Failed() {
				node.mu.Lock()
				t.Logf("node %d's log:\n%s", i, tail(node.log.String(), 40))
				node.mu.Unlock()
			}
		})
		nodes = append(nodes, node)
	}
	deadline := time.Now().Add(60 * time.Second)
	for _, node := range nodes {
		for listed(node) != n {
			if !last && anyExited(nodes) {
				for _, nd := range nodes {
					nd.kill()
				}
				return nil, false
			}
			if time.Now().After(deadline) {
				t.Fatalf("the cluster did not form: %s lists %d nodes", node.addr, listed(node))
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	return nodes, true
}

// anyExited reports whether one of nodes has exited.
func anyExited(nodes []*processNode) bool {
	for _, nd := range nodes {
		select {
		case <-nd.exited:
			return true
		default:
		}
	}
	return false
}

// listed is how many nodes GET /v1/nodes lists (0 when it does not answer).
func listed(n *processNode) int {
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get(n.base() + "/v1/nodes")
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	var body struct {
		Nodes []json.RawMessage `json:"nodes"`
	}
	if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&body) != nil {
		return 0
	}
	return len(body.Nodes)
}

func freeTCPPorts(t *testing.T, n int) []int {
	t.Helper()
	var ls []net.Listener
	var ports []int
	for i := 0; i < n; i++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	for _, l := range ls {
		_ = l.Close()
	}
	return ports
}
