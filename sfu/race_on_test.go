//go:build race

package sfu

// raceEnabled: under the race detector sync.Pool drops a random share of
// what is put back, so pooled paths allocate by design.
const raceEnabled = true
