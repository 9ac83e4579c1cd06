package sfu

import (
	"time"

	"github.com/pion/rtcp"
	"github.com/starling-rtc/starling/internal/clock"
)

// ReceptionStats is what a subscriber's receiver reports say about one down
// track: how its stream arrives at the subscriber.
type ReceptionStats struct {
	FractionLost float64       // 0..1, over the last report interval
	PacketsLost  int32         // cumulative, as the subscriber counts them
	Jitter       time.Duration // interarrival jitter
	RTT          time.Duration // from the report's LSR/DLSR; 0 = unknown yet
	At           time.Time     // when the last report arrived
}

// ReceptionStats returns the latest receiver-report figures; false when
// the subscriber has not reported on this track yet.
func (d *DownTrack) ReceptionStats() (ReceptionStats, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.reception, !d.reception.At.IsZero()
}

// onReceptionReport keeps one report block about this track. The SFU's
// sender reports carry its wall clock as NTP time, so the round trip is the
// arrival time minus the echoed report time (LSR) minus the subscriber's
// delay since it (DLSR), all in the middle 32 bits of NTP (1/65536 s).
// Call with d.mu held.
func (d *DownTrack) onReceptionReport(r rtcp.ReceptionReport, now time.Time) {
	st := ReceptionStats{
		FractionLost: float64(r.FractionLost) / 256,
		PacketsLost:  signed24(r.TotalLost),
		RTT:          d.reception.RTT,
		At:           now,
	}
	if rate := d.codec.ClockRate; rate > 0 {
		st.Jitter = time.Duration(uint64(r.Jitter) * uint64(time.Second) / uint64(rate))
	}
	if r.LastSenderReport != 0 {
		mid := uint32(unixNanosToNTP(clock.Wall().UnixNano()) >> 16) // the clock our reports carry
		if rtt := mid - r.LastSenderReport - r.Delay; int32(rtt) >= 0 && rtt < 60<<16 {
			st.RTT = time.Duration(uint64(rtt) * uint64(time.Second) >> 16)
		}
	}
	d.reception = st
	// A receiver that got no packet of the SSRC reports none (browsers)
	// or an extended highest sequence number of 0 (pion): every stream
	// starts at 1 or above (initialseq.go).
	if r.LastSequenceNumber != 0 {
		d.heard = true
	}
}

// signed24 reads RTCP's 24-bit signed cumulative loss.
func signed24(v uint32) int32 {
	v &= 0xffffff
	if v&0x800000 != 0 {
		return int32(v) - 1<<24
	}
	return int32(v)
}
