package loadgen

import (
	"errors"
	"fmt"
	"math"
	"math/bits"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// Histogram bucket layout: values in microseconds, exact below 64 µs, then 32
// buckets per power of two (at most ~3% relative error), up to about 71
// minutes; larger values land in the last bucket.
const (
	histLinear  = 64
	histSub     = 32
	histOctaves = 26
	histBuckets = histLinear + histOctaves*histSub
)

// Histogram counts durations with atomic counters: one goroutine records,
// any goroutine may take a Snapshot. Recording never allocates.
type Histogram struct {
	b [histBuckets]atomic.Uint64
}

// HistSnapshot is a point-in-time copy of a Histogram; snapshots subtract
// (a window) and add (merge streams).
type HistSnapshot [histBuckets]uint64

func histIndex(us uint64) int {
	if us < histLinear {
		return int(us)
	}
	e := bits.Len64(us) - 6 // us>>e is in [32, 64)
	i := histLinear + (e-1)*histSub + int(us>>e) - histSub
	if i >= histBuckets {
		return histBuckets - 1
	}
	return i
}

// histUpper is the largest value (µs) that falls in bucket i.
func histUpper(i int) uint64 {
	if i < histLinear {
		return uint64(i)
	}
	e := (i-histLinear)/histSub + 1
	m := uint64((i-histLinear)%histSub + histSub)
	return (m+1)<<e - 1
}

// Record adds one duration; negative durations count as zero.
func (h *Histogram) Record(d time.Duration) {
	us := uint64(0)
	if d > 0 {
		us = uint64(d / time.Microsecond)
	}
	h.b[histIndex(us)].Add(1)
}

// Snapshot copies the counters.
func (h *Histogram) Snapshot() (s HistSnapshot) {
	for i := range h.b {
		s[i] = h.b[i].Load()
	}
	return s
}

// Sub returns s - o (the counts recorded between snapshot o and s).
func (s *HistSnapshot) Sub(o *HistSnapshot) (r HistSnapshot) {
	for i := range s {
		if s[i] > o[i] {
			r[i] = s[i] - o[i]
		}
	}
	return r
}

// Add adds o into s.
func (s *HistSnapshot) Add(o *HistSnapshot) {
	for i := range s {
		s[i] += o[i]
	}
}

// Count is the number of values recorded.
func (s *HistSnapshot) Count() uint64 {
	var n uint64
	for _, c := range s {
		n += c
	}
	return n
}

// Percentile returns the upper bound of the bucket holding the p-th
// percentile (nearest rank), 0 < p ≤ 100; 0 when empty.
func (s *HistSnapshot) Percentile(p float64) time.Duration {
	n := s.Count()
	if n == 0 {
		return 0
	}
	rank := nearestRank(p, int(n))
	var seen uint64
	for i, c := range s {
		seen += c
		if seen > uint64(rank) {
			return time.Duration(histUpper(i)) * time.Microsecond
		}
	}
	return time.Duration(histUpper(histBuckets-1)) * time.Microsecond
}

// nearestRank is the 0-based index of the p-th percentile among n sorted
// values: the smallest value with at least p% of the values ≤ it.
func nearestRank(p float64, n int) int {
	r := int(math.Ceil(p/100*float64(n))) - 1
	return max(0, min(r, n-1))
}

// Percentile returns the p-th percentile (nearest rank) of values, which it
// sorts in place; 0 for none.
func Percentile(values []time.Duration, p float64) time.Duration {
	if len(values) == 0 {
		return 0
	}
	slices.Sort(values)
	return values[nearestRank(p, len(values))]
}

// ParseBitrate parses a bit rate such as "2.5M", "800k", "48kbps", "1.5Mbit/s"
// or "64000" (bits per second; k, M, G are powers of 1000).
func ParseBitrate(s string) (int64, error) {
	t := strings.TrimSpace(s)
	low := strings.ToLower(t)
	for _, unit := range []string{"bit/s", "bps", "b/s", "b"} {
		if strings.HasSuffix(low, unit) {
			t, low = t[:len(t)-len(unit)], low[:len(low)-len(unit)]
			break
		}
	}
	mult := 1.0
	if n := len(low); n > 0 {
		switch low[n-1] {
		case 'k':
			mult = 1e3
		case 'm':
			mult = 1e6
		case 'g':
			mult = 1e9
		}
		if mult != 1 {
			t = t[:n-1]
		}
	}
	v, err := strconv.ParseFloat(strings.TrimSpace(t), 64)
	if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
		return 0, fmt.Errorf("bit rate %q: want a number with an optional k, M or G suffix, e.g. 2.5M", s)
	}
	if v < 0 {
		return 0, errors.New("bit rate must not be negative")
	}
	bps := v * mult
	if bps > 1e12 {
		return 0, fmt.Errorf("bit rate %q is too large", s)
	}
	return int64(math.Round(bps)), nil
}

// FormatBitrate writes bits per second with a k/M/G suffix.
func FormatBitrate(bps float64) string {
	switch {
	case bps >= 1e9:
		return strconv.FormatFloat(bps/1e9, 'f', 2, 64) + "G"
	case bps >= 1e6:
		return strconv.FormatFloat(bps/1e6, 'f', 2, 64) + "M"
	case bps >= 1e3:
		return strconv.FormatFloat(bps/1e3, 'f', 1, 64) + "k"
	}
	return strconv.FormatFloat(bps, 'f', 0, 64)
}

// Bitrate is a flag.Value for bit rates.
type Bitrate int64

func (b *Bitrate) String() string { return FormatBitrate(float64(*b)) }

// Set parses a bit rate.
func (b *Bitrate) Set(s string) error {
	v, err := ParseBitrate(s)
	if err != nil {
		return err
	}
	*b = Bitrate(v)
	return nil
}

// OnOff is a boolean flag.Value that also accepts on/off and yes/no.
type OnOff bool

func (o *OnOff) String() string {
	if *o {
		return "on"
	}
	return "off"
}

// IsBoolFlag lets --flag alone mean on.
func (o *OnOff) IsBoolFlag() bool { return true }

// Set parses on/off, true/false, yes/no, 1/0.
func (o *OnOff) Set(s string) error {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "on", "true", "yes", "1":
		*o = true
	case "off", "false", "no", "0":
		*o = false
	default:
		return fmt.Errorf("%q: want on or off", s)
	}
	return nil
}
