//go:build !race

package cluster

// defaultParallel without the race detector: the package's tests used
// about 12 s of CPU in a 2-minute run at four at once (they wait on
// heartbeats, JetStream elections, media paced in real time), so eight at
// once still leaves the CPU mostly idle.
const defaultParallel = 8
