//go:build race

package cluster

// defaultParallel under the race detector: every test costs several times
// more CPU there (pion's handshakes above all), and the 2-core CI machine
// also runs another package's tests beside this one, so four at once.
const defaultParallel = 4
