//go:build race

package cluster_test

// busCutsAtOnce under the race detector: one bus-cut test at a time
// (busCutSlots, partition_test.go).
const busCutsAtOnce = 1

// raceEnabled: the race detector is on (sched_test.go: no longest first).
const raceEnabled = true
