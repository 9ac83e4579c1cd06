//go:build race

package cluster_test

// mixUnderRace: built with -race, Opus in Go runs slower than real time on
// a small machine and the mixer skips frames: the mix test checks that the
// remote voice's packets reach the listener, not the decoded tone.
const mixUnderRace = true
