package config

import (
	"flag"
	"path"
	"strings"
)

// EnvRecordingsDir names the environment variable that sets recordings.dir
// (between the config file and the --recordings-dir flag in precedence).
const EnvRecordingsDir = "STARLING_RECORDINGS_DIR"

// Recordings configures the recorder (see docs/recording.md).
type Recordings struct {
	// Dir holds one folder per recording.
	Dir string `yaml:"dir"`
	// AutoRecord lists room name patterns (path.Match syntax: "*",
	// "class-*") whose rooms are recorded from their first published track.
	AutoRecord []string `yaml:"auto_record"`
	// Compose renders every finished room recording into composed.mp4 in
	// its folder with ffmpeg (like `starling compose`), in the background.
	Compose bool `yaml:"compose"`
	// Mix adds the room's live audio mix as mix.webm to auto-recorded
	// rooms (the room mixes while recorded; docs/mixing.md).
	Mix bool `yaml:"mix"`
}

// recordingFlags defines the recording flags and returns the function that
// copies a given flag into cfg.
func recordingFlags(fs *flag.FlagSet, def Config) func(cfg *Config, name string) {
	dir := fs.String("recordings-dir", def.Recordings.Dir, "`folder` for recordings (one folder per recording); $"+EnvRecordingsDir+" sets it too")
	compose := fs.Bool("recordings-compose", def.Recordings.Compose, "render each finished room recording into composed.mp4 (needs ffmpeg)")
	mix := fs.Bool("recordings-mix", def.Recordings.Mix, "auto-recorded rooms also record their live audio mix as mix.webm")
	var auto listFlag
	fs.Var(&auto, "auto-record", "record rooms whose name matches `pattern` (path.Match: *, ?, [a-z]); repeatable or comma-separated")
	return func(cfg *Config, name string) {
		switch name {
		case "recordings-dir":
			cfg.Recordings.Dir = *dir
		case "auto-record":
			cfg.Recordings.AutoRecord = []string(auto)
		case "recordings-compose":
			cfg.Recordings.Compose = *compose
		case "recordings-mix":
			cfg.Recordings.Mix = *mix
		}
	}
}

// applyEnvRecordings applies $STARLING_RECORDINGS_DIR.
func (c *Config) applyEnvRecordings(getenv func(string) string) {
	if v := strings.TrimSpace(getenv(EnvRecordingsDir)); v != "" {
		c.Recordings.Dir = v
	}
}

func (c Config) validateRecordings(bad func(format string, args ...any)) {
	if strings.TrimSpace(c.Recordings.Dir) == "" {
		bad("recordings.dir: must not be empty (default ./recordings)")
	}
	for _, p := range c.Recordings.AutoRecord {
		if _, err := path.Match(p, ""); err != nil || p == "" {
			bad("recordings.auto_record %q: not a valid pattern (use *, ? and [a-z], e.g. \"class-*\")", p)
		}
	}
}
