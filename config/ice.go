package config

import (
	"flag"
	"time"
)

// DefaultICEFailedTimeout is pion's own: 5 s to disconnected, 25 s more to
// failed.
const DefaultICEFailedTimeout = 30 * time.Second

// iceFlags defines --ice-failed-timeout and returns the function that
// copies it into cfg when given.
func iceFlags(fs *flag.FlagSet, def Config) func(cfg *Config, name string) {
	failed := fs.Duration("ice-failed-timeout", def.RTC.ICEFailedTimeout.Std(),
		"a media connection that hears nothing from its client this long fails: the participant leaves\n"+
			"(a WHIP/WHEP session ends; a WebSocket client gets the resume window)")
	return func(cfg *Config, name string) {
		if name == "ice-failed-timeout" {
			cfg.RTC.ICEFailedTimeout = Duration(*failed)
		}
	}
}

func (c Config) validateICE(bad func(format string, args ...any)) {
	// Below ~6 s a client's consent checks (every 4-6 s when no media
	// flows) could not keep an idle connection alive.
	if t := c.RTC.ICEFailedTimeout.Std(); t < 6*time.Second || t > 10*time.Minute {
		bad("rtc.ice_failed_timeout: %s: must be 6s..10m", t)
	}
}
