//go:build !race

package recorder

// defaultParallel without the race detector: four tests at once, since
// they mostly wait on media paced in real time (ffmpeg's encodes in the
// compose tests are the CPU they use).
const defaultParallel = 4
