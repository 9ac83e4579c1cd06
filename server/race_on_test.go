//go:build race

package server_test

// raceEnabled: built with -race. The race detector makes every test
// several times as hungry for CPU: fewer run at once (setDefaultParallel),
// and the mix tests that need a real-time mixer skip.
const raceEnabled = true
