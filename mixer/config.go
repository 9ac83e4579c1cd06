package mixer

import "time"

// Config tunes a room's mixer; zero values take the defaults.
type Config struct {
	// Speakers is how many of the loudest speakers are mixed (default 3).
	Speakers int
	// Jitter is how much audio an input buffers before it plays, rounded
	// to 20 ms frames (default 40 ms): more absorbs more network jitter and
	// adds as much delay.
	Jitter time.Duration
	// Bitrate is each mix's Opus bitrate in bits per second (default 32000).
	Bitrate int
	// Complexity is the Opus encoder's complexity 0..10 (default 5): the
	// encoders are most of the mixer's CPU.
	Complexity int
}

// Defaults.
const (
	DefaultSpeakers   = 3
	DefaultJitter     = 40 * time.Millisecond
	DefaultBitrate    = 32000
	DefaultComplexity = 5
)

func (c Config) withDefaults() Config {
	if c.Speakers <= 0 {
		c.Speakers = DefaultSpeakers
	}
	if c.Jitter <= 0 {
		c.Jitter = DefaultJitter
	}
	if c.Bitrate <= 0 {
		c.Bitrate = DefaultBitrate
	}
	if c.Complexity <= 0 || c.Complexity > 10 {
		c.Complexity = DefaultComplexity
	}
	return c
}

// jitterFrames is the jitter buffer's depth in frames, at least one.
func (c Config) jitterFrames() int {
	return max(1, int((c.Jitter+frameDuration/2)/frameDuration))
}
