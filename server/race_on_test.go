//go:build race

package server_test

// raceEnabled: the race detector makes every test several times as hungry
// for CPU; fewer run at once (see setDefaultParallel).
const raceEnabled = true
