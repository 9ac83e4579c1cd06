//go:build race

package main

// raceEnabled: built with -race, under which the pure-Go Opus codec runs
// slower than real time on a small machine and the mixer skips frames.
const raceEnabled = true
