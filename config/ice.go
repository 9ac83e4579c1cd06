package config

import (
	"flag"
	"time"
)

// DefaultICEFailedTimeout is pion's own: 5 s to disconnected, 25 s more to
// failed.
const DefaultICEFailedTimeout = 30 * time.Second

// DefaultSenderReportInterval is how often a down track's RTCP sender
// report goes out (the interval pion's own report sender uses).
const DefaultSenderReportInterval = time.Second

// iceFlags defines --ice-failed-timeout and --sender-report-interval (the
// media connection's timers) and returns the function that copies them
// into cfg when given.
func iceFlags(fs *flag.FlagSet, def Config) func(cfg *Config, name string) {
	failed := fs.Duration("ice-failed-timeout", def.RTC.ICEFailedTimeout.Std(),
		"a media connection that hears nothing from its client this long fails: the participant leaves\n"+
			"(a WHIP/WHEP session ends; a WebSocket client gets the resume window)")
	srInterval := fs.Duration("sender-report-interval", def.RTC.SenderReportInterval.Std(),
		"how often subscribers get an RTCP sender report for each track (lip sync, round trip)")
	return func(cfg *Config, name string) {
		switch name {
		case "ice-failed-timeout":
			cfg.RTC.ICEFailedTimeout = Duration(*failed)
		case "sender-report-interval":
			cfg.RTC.SenderReportInterval = Duration(*srInterval)
		}
	}
}

func (c Config) validateICE(bad func(format string, args ...any)) {
	// Below ~6 s a client's consent checks (every 4-6 s when no media
	// flows) could not keep an idle connection alive.
	if t := c.RTC.ICEFailedTimeout.Std(); t < 6*time.Second || t > 10*time.Minute {
		bad("rtc.ice_failed_timeout: %s: must be 6s..10m", t)
	}
	// A receiver syncs audio and video from its first reports: much rarer
	// and a subscriber waits for lip sync; much more often, they are
	// overhead on every track.
	if t := c.RTC.SenderReportInterval.Std(); t < 100*time.Millisecond || t > 10*time.Second {
		bad("rtc.sender_report_interval: %s: must be 100ms..10s", t)
	}
}
