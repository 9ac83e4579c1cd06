//go:build race

package main_test

// raceEnabled: built with -race, under which the CPU is the detector's:
// the tests that run the binary run one after another.
const raceEnabled = true
