//go:build !race

package cluster

// defaultParallel without the race detector: the package's tests used
// about 20 s of CPU in a 100-second run at eight at once (they wait on
// heartbeats, JetStream elections, media paced in real time), and at eight
// the long ones that happened to start last were its tail (a slow bus,
// the cross-node mix: 30 s each from the 55th second), so twelve.
const defaultParallel = 12
