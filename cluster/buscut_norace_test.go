//go:build !race

package cluster_test

// busCutsAtOnce without the race detector: every bus-cut test at once
// (busCutSlots, partition_test.go); one at a time, they were the package's
// critical path (7 tests, about 75 s).
const busCutsAtOnce = 7

// raceEnabled: the race detector is on (sched_test.go: no longest first).
const raceEnabled = false
