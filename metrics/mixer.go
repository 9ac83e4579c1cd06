package metrics

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/starling-rtc/starling/mixer"
)

// mixerCollectors export the live audio mixers' totals (docs/mixing.md).
func mixerCollectors() []prometheus.Collector {
	counter := func(name, help string, f func(mixer.Totals) uint64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: namespace, Subsystem: "mixer", Name: name, Help: help},
			func() float64 { return float64(f(mixer.ReadTotals())) })
	}
	return []prometheus.Collector{
		counter("frames_total", "20 ms frames mixed with at least one voice, over all rooms.", func(t mixer.Totals) uint64 { return t.Frames }),
		counter("encodes_total", "Opus frames encoded by the mixers (the shared mix and each mix-minus).", func(t mixer.Totals) uint64 { return t.Encodes }),
		counter("concealed_frames_total", "Input frames concealed (lost or late packets), with FEC or PLC.", func(t mixer.Totals) uint64 { return t.Concealed }),
		counter("fec_frames_total", "Concealed input frames recovered from in-band FEC.", func(t mixer.Totals) uint64 { return t.FEC }),
		counter("codec_errors_total", "Opus decode and encode errors in the mixers.", func(t mixer.Totals) uint64 { return t.DecodeErrors + t.EncodeErrors }),
		counter("skipped_frames_total", "20 ms frames never mixed because the mixer was stalled (starved of CPU) for more than 160 ms: a hole in every listener's stream.", func(t mixer.Totals) uint64 { return t.Skipped }),
	}
}
