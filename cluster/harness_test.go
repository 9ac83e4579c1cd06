package cluster_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/starling-rtc/starling/client"
	"github.com/starling-rtc/starling/cluster"
	"github.com/starling-rtc/starling/config"
	"github.com/starling-rtc/starling/internal/testutil"
	"github.com/starling-rtc/starling/internal/testutil/testnode"
	"github.com/starling-rtc/starling/server"
)

// testSecret is the test clusters' secret, this process's own. Several
// test processes run test clusters at once (the packages of one go test,
// other checkouts' suites on the same machine), each node routing to ports
// picked free and released. A node of another process whose peer had a
// port that one of this process's nodes now holds keeps dialling it; with
// one secret for every process its route was accepted: two clusters merged,
// or, when the two nodes had one name (every test cluster names its nodes
// n0, n1, ...), the start failed with "another node on the bus has this
// node's --node-id" (TestFirstRoomMediaFreshCluster under load). With a
// secret of its own each process refuses the other's routes. Hex: it also
// goes into nats:// URLs.
var testSecret = func() string {
	b := make([]byte, 12)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return "test-cluster-secret-" + hex.EncodeToString(b)
}()

// handedOut holds every port freePorts returned in this process: tests run
// in parallel, and a port one released for its node to bind must not be
// handed to another (a node that finds its port taken fails and is started
// again on fresh ports).
var handedOut = struct {
	sync.Mutex
	ports map[int]bool
}{ports: map[int]bool{}}

// freePorts returns n free TCP ports on loopback, none returned before.
func freePorts(t testing.TB, n int) []int {
	t.Helper()
	var ls []net.Listener
	var ports []int
	handedOut.Lock()
	defer handedOut.Unlock()
	for len(ports) < n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ls = append(ls, l) // held until all are picked: no repeats
		p := l.Addr().(*net.TCPAddr).Port
		if !handedOut.ports[p] {
			handedOut.ports[p] = true
			ports = append(ports, p)
		}
	}
	for _, l := range ls {
		_ = l.Close()
	}
	return ports
}

// nodeConfig is a loopback node of a test cluster whose route ports are
// ports; node i listens on ports[i] and routes to the others.
func nodeConfig(ports []int, i int, tune func(*config.Config)) config.Config {
	cfg := testnode.Config()
	cfg.RTC.CongestionControl = false
	cfg.Room.EmptyTimeout = config.Duration(300 * time.Millisecond)
	cfg.Room.NegotiationTimeout = config.Duration(10 * time.Second)
	cfg.Room.ResumeWindow = config.Duration(time.Second)
	cfg.Cluster.NodeID = fmt.Sprintf("n%d", i)
	cfg.Cluster.Listen = fmt.Sprintf("127.0.0.1:%d", ports[i])
	cfg.Cluster.Secret = testSecret
	for j, p := range ports {
		if j != i {
			cfg.Cluster.Routes = append(cfg.Cluster.Routes, fmt.Sprintf("nats://127.0.0.1:%d", p))
		}
	}
	if tune != nil {
		tune(&cfg)
	}
	return cfg
}

func testLogger() *slog.Logger {
	var w io.Writer = io.Discard
	if os.Getenv("STARLING_TEST_LOG") != "" {
		w = os.Stderr
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: testLevel()}))
}

// startCluster starts n routed nodes in parallel (JetStream needs a
// majority before any of them is ready). Free ports are picked and then
// released, so another test process may take one before the node binds it:
// a node that could not start is retried on fresh ports.
func startCluster(t testing.TB, n int, tune func(*config.Config)) []*server.Server {
	t.Helper()
	return startClusterOn(t, n, func([]int) func(*config.Config) { return tune })
}

// startClusterOn is startCluster for a test whose tuning depends on the
// ports picked (a proxy in front of each): setup runs again on each retry.
func startClusterOn(t testing.TB, n int, setup func(ports []int) func(*config.Config)) []*server.Server {
	t.Helper()
	for attempt := 1; ; attempt++ {
		ports := freePorts(t, n)
		srvs, err := tryStartNodes(t, ports, n, setup(ports))
		if err == nil {
			return srvs
		}
		if attempt == 3 || !startAgain(err) {
			t.Fatalf("starting the cluster: %v", err)
		}
		t.Logf("starting the cluster (attempt %d): %v; again on other ports", attempt, err)
	}
}

// startAgain tells a test cluster's start that failed for the test's own
// sake, and is started again, from a real failure. Three causes:
//   - a node "did not start": its port, free when picked, was taken
//     meanwhile by another test process;
//   - a peer "refused this node's cluster secret": the same, seen from a
//     node that dialled that port first and met the other process's node
//     (testSecret is this process's own);
//   - the state store "has no leader" within the nodes' start wait (30 s):
//     the nodes run in one process, so when it is starved every node's
//     election timer that expired during a stall fires at the same wake-up,
//     every node votes for itself, and the next round comes 4-9 s later
//     (nats-server's election timeout). A loaded machine split 10 of 30
//     rounds (TestWrongSecretRefused alone, load 13-22): four in a row use
//     up the start wait. Nodes on separate machines do not share stalls.
func startAgain(err error) bool {
	return strings.Contains(err.Error(), "did not start") || strings.Contains(err.Error(), "has no leader") ||
		strings.Contains(err.Error(), cluster.ErrSecretRejected.Error())
}

// startNodes starts the first n nodes of a cluster whose route ports are ports.
func startNodes(t testing.TB, ports []int, n int, tune func(*config.Config)) []*server.Server {
	t.Helper()
	srvs, err := tryStartNodes(t, ports, n, tune)
	if err != nil {
		t.Fatalf("starting the cluster: %v", err)
	}
	return srvs
}

// tryStartNodes starts the nodes; if any fails, the others are shut down
// again and the first error returned.
func tryStartNodes(t testing.TB, ports []int, n int, tune func(*config.Config)) ([]*server.Server, error) {
	t.Helper()
	srvs := make([]*server.Server, n)
	errs := make(chan error, n)
	for i := 0; i < n; i++ {
		go func(i int) {
			// The test's name: the package's tests run side by side, each
			// with its own n0..n2, and their logs interleave.
			srv, err := server.New(nodeConfig(ports, i, tune), testLogger().With("test-node", i, "test", t.Name()))
			srvs[i] = srv
			errs <- err
		}(i)
	}
	var firstErr error
	for i := 0; i < n; i++ {
		if err := <-errs; err != nil && firstErr == nil {
			firstErr = err
		}
	}
	for _, srv := range srvs {
		if srv == nil {
			continue
		}
		if firstErr != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
			_ = srv.Shutdown(ctx)
			cancel()
			continue
		}
		srv.Serve()
	}
	if firstErr != nil {
		return nil, firstErr
	}
	t.Cleanup(func() { shutdownAll(srvs) })
	return srvs, nil
}

// nodesOf reads GET /v1/nodes from a node.
func nodesOf(t testing.TB, srv *server.Server) []cluster.NodeInfo {
	t.Helper()
	resp, err := http.Get(srv.BaseURL() + "/v1/nodes")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /v1/nodes: %s", resp.Status)
	}
	var body struct {
		Nodes []cluster.NodeInfo `json:"nodes"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatal(err)
	}
	return body.Nodes
}

// eventually polls cond until it holds or the deadline passes.
var eventually = testutil.Eventually

// join connects a Go client to a node over loopback.
func join(t testing.TB, srv *server.Server, room, name string, opts ...func(*client.Options)) *client.Client {
	t.Helper()
	// 30 s, as the server tests': three-node clusters side by side under
	// -race on a loaded machine answered a join after more than 15 s.
	return testutil.Join(t, srv.SignalingURL(), room, name, 30*time.Second, opts...)
}

var ctxT = testutil.Ctx

func itoa(i int) string { return fmt.Sprint(i) }

func testLevel() slog.Level {
	if os.Getenv("STARLING_TEST_LOG") == "debug" {
		return slog.LevelDebug
	}
	return slog.LevelInfo
}

// waitRTT waits for a first bus round-trip measure and returns it.
func waitRTT(t testing.TB, n *cluster.Node) time.Duration {
	t.Helper()
	eventually(t, 20*time.Second, "a bus round trip is measured", func() bool { return n.BusRTT() > 0 })
	return n.BusRTT()
}

// shutdownAll shuts a test cluster's nodes down at once. One after the
// other (a cleanup each), the last had no store majority left for its own
// closing writes (its participants' leaves, track keys, its node key) and
// waited out their timeouts: the package's node shutdowns took 175-190 s
// of its tests' places (0.5-5 s per cluster, up to 16 s), against about
// 110-135 s at once.
func shutdownAll(srvs []*server.Server) {
	var wg sync.WaitGroup
	for _, srv := range srvs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
			defer cancel()
			_ = srv.Shutdown(ctx)
		}()
	}
	wg.Wait()
}

// serveNode starts node i of a test whose nodes share an external NATS
// (the config made by the test), and shuts it down at the test's end.
func serveNode(t testing.TB, cfg config.Config, i int) *server.Server {
	t.Helper()
	srv, err := server.New(cfg, testLogger().With("test-node", i))
	if err != nil {
		t.Fatalf("node %d: %v", i, err)
	}
	srv.Serve()
	t.Cleanup(func() { _ = srv.Shutdown(ctxT(t, 15*time.Second)) })
	return srv
}
