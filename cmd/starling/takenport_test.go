package main_test

import (
	"net"
	"testing"
	"time"
)

// TestProcessClusterStartsAgainOnTakenPort: a cluster port taken by
// another process between freePorts and the node's start (seen in a
// loaded suite run: TestClusterProcesses waited out a minute for a node
// that had exited at once) makes startCluster start again on fresh ports.
func TestProcessClusterStartsAgainOnTakenPort(t *testing.T) {
	bin := clusterBinary(t, "builds the binary and runs two nodes")
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	ports := append([]int{taken.Addr().(*net.TCPAddr).Port}, freePorts(t, 1)...)
	start := time.Now()
	_, addrs := startCluster(t, bin, ports, "tp", 0)
	for i, a := range addrs {
		if a == "" {
			t.Fatalf("node %d has no address", i)
		}
	}
	waitFor(t, 20*time.Second, "both nodes list each other", func() bool { return nodeCount(addrs[0]) == 2 && nodeCount(addrs[1]) == 2 })
	t.Logf("started in %s with one port taken", time.Since(start).Round(time.Millisecond))
}
