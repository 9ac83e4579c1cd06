package config

import (
	"flag"
	"time"

	"github.com/starling-rtc/starling/mixer"
)

// Mix tunes the live audio mix (docs/mixing.md). A room mixes while a
// participant asks for it (join's audioMix, setAudioMix); nothing here
// needs setting for that.
type Mix struct {
	// Speakers is how many of the loudest speakers are mixed.
	Speakers int `yaml:"speakers"`
	// Jitter is how much audio each input buffers (20 ms steps).
	Jitter Duration `yaml:"jitter"`
	// Bitrate is each mixed stream's Opus bitrate, bits/s.
	Bitrate int `yaml:"bitrate"`
	// Complexity is the Opus encoder's complexity, 1..10.
	Complexity int `yaml:"complexity"`
}

func (c *Config) defaultMix() {
	c.Mix = Mix{Speakers: mixer.DefaultSpeakers, Jitter: Duration(mixer.DefaultJitter),
		Bitrate: mixer.DefaultBitrate, Complexity: mixer.DefaultComplexity}
}

// MixerConfig is the mixer's configuration.
func (c Config) MixerConfig() mixer.Config {
	return mixer.Config{Speakers: c.Mix.Speakers, Jitter: c.Mix.Jitter.Std(), Bitrate: c.Mix.Bitrate, Complexity: c.Mix.Complexity}
}

// mixFlags defines the mix flags and returns the function that copies a
// given flag into cfg.
func mixFlags(fs *flag.FlagSet, def Config) func(cfg *Config, name string) {
	speakers := fs.Int("mix-speakers", def.Mix.Speakers, "how many of the loudest speakers the live audio mix mixes")
	jitter := fs.Duration("mix-jitter", def.Mix.Jitter.Std(), "audio each mix input buffers against network jitter (20 ms steps)")
	bitrate := fs.Int("mix-bitrate", def.Mix.Bitrate, "Opus bitrate of each mixed stream, bits/s")
	complexity := fs.Int("mix-complexity", def.Mix.Complexity, "Opus encoder complexity of the mix, 1..10 (CPU against quality)")
	return func(cfg *Config, name string) {
		switch name {
		case "mix-speakers":
			cfg.Mix.Speakers = *speakers
		case "mix-jitter":
			cfg.Mix.Jitter = Duration(*jitter)
		case "mix-bitrate":
			cfg.Mix.Bitrate = *bitrate
		case "mix-complexity":
			cfg.Mix.Complexity = *complexity
		}
	}
}

func (c Config) validateMix(bad func(format string, args ...any)) {
	if c.Mix.Speakers < 1 || c.Mix.Speakers > 16 {
		bad("mix.speakers: %d: must be 1..16", c.Mix.Speakers)
	}
	if j := c.Mix.Jitter.Std(); j < 20*time.Millisecond || j > 200*time.Millisecond {
		bad("mix.jitter: %s: must be 20ms..200ms", j)
	}
	if c.Mix.Bitrate < 6000 || c.Mix.Bitrate > 510000 {
		bad("mix.bitrate: %d: must be 6000..510000 bits/s", c.Mix.Bitrate)
	}
	if c.Mix.Complexity < 1 || c.Mix.Complexity > 10 {
		bad("mix.complexity: %d: must be 1..10", c.Mix.Complexity)
	}
}
