//go:build race

package cluster_test

// Under the race detector pion's handshakes cost several times more CPU:
// 60 clients at once starved the nodes' state store on the 2-core CI
// machine (its operations timed out), which is the machine, not the
// admission under test. Half the storm, the same checks.
const (
	stormJoins = 30
	stormLimit = 22
)
