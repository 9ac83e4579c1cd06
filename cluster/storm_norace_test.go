//go:build !race

package cluster_test

// stormJoins and stormLimit: 60 joins at once spread over three nodes, into
// a room limited to 45 participants (TestJoinStorm).
const (
	stormJoins = 60
	stormLimit = 45
)
