//go:build race

package recorder

// defaultParallel under the race detector: pion's handshakes and the Go
// side of every recording cost several times more CPU there, so go test's
// default (GOMAXPROCS).
const defaultParallel = 0
