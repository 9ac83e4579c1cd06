package cluster_test

import (
	"strings"
	"testing"
	"time"

	"github.com/starling-rtc/starling/config"
	"github.com/starling-rtc/starling/server"
)

// Three routed nodes list each other in GET /v1/nodes; a crashed node is
// gone from the list within 5 s.
func TestNodesListAndDeadNode(t *testing.T) {
	parallelDeadNode(t)
	srvs := startCluster(t, 3, nil)
	for _, s := range srvs {
		eventually(t, 10*time.Second, "every node lists 3 nodes", func() bool { return len(nodesOf(t, s)) == 3 })
	}
	ns := nodesOf(t, srvs[0])
	if !ns[0].Self || ns[0].ID != "n0" || ns[1].ID != "n1" || ns[2].ID != "n2" {
		t.Fatalf("nodes from n0: %+v", ns)
	}
	if ns[1].URL != srvs[1].BaseURL() {
		t.Errorf("n1's url = %q, want %q", ns[1].URL, srvs[1].BaseURL())
	}
	crashed := time.Now()
	srvs[2].Cluster().Crash()
	eventually(t, 8*time.Second, "n2 disappears from n0's and n1's lists", func() bool {
		return len(nodesOf(t, srvs[0])) == 2 && len(nodesOf(t, srvs[1])) == 2
	})
	if d := time.Since(crashed); d > 5*time.Second {
		t.Errorf("the dead node was listed for %s, want < 5 s", d)
	}
}

// A node whose secret differs from its peers' refuses to start, saying why.
func TestWrongSecretRefused(t *testing.T) {
	parallel(t)
	var ports []int
	for attempt := 1; ; attempt++ { // a port picked may be taken by another process before its node binds it
		ports = freePorts(t, 3)
		_, err := tryStartNodes(t, ports, 2, nil) // two of three: a majority, ready
		if err == nil {
			break
		}
		if attempt == 3 || !startAgain(err) {
			t.Fatalf("starting the cluster: %v", err)
		}
	}
	// The wrong node listens on a port picked now, not on ports[2]: the two
	// running nodes keep dialling ports[2] (their route to the third node),
	// and a dial to a closed local port in the ephemeral range can connect
	// to itself and hold that port (CI: the wrong node "did not start" on
	// it instead of being refused for its secret).
	var bad *server.Server
	var err error
	var start time.Time
	for attempt := 1; ; attempt++ {
		own := []int{ports[0], ports[1], freePorts(t, 1)[0]}
		cfg := nodeConfig(own, 2, func(c *config.Config) { c.Cluster.Secret = "another-secret-9876543210" })
		start = time.Now()
		bad, err = server.New(cfg, testLogger())
		if err == nil || attempt == 3 || !strings.Contains(err.Error(), "did not start") {
			break
		}
	}
	t.Logf("refused after %s", time.Since(start))
	if err == nil {
		_ = bad.Shutdown(ctxT(t, 10*time.Second))
		t.Fatal("a node with the wrong secret started")
	}
	if !strings.Contains(err.Error(), "cluster secret") {
		t.Errorf("error = %v, want it to name the cluster secret", err)
	}
}
