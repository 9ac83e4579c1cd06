//go:build race

package server_test

// raceEnabled: built with -race (the mix tests that need a real-time mixer skip).
const raceEnabled = true
