// Package mixer is the MCU half of Starling: it mixes a room's loudest
// microphones into Opus streams, one shared by the listeners who do not
// speak and one per mixed speaker who listens (mix-minus: everyone but
// themselves). Each mixed track feeds an input through an sfu.Sink (a
// jitter buffer, then an Opus decoder with loss concealment); each listener
// gets its mix through an Output, an sfu.Source an ordinary down track reads.
// One goroutine per room mixes every 20 ms; the receivers' read goroutines
// only copy packets into the jitter buffers.
package mixer
