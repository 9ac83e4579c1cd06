package sfu

import "math"

// The estimator's delay-based detector (bwe.go has the rest): whether the
// feedback's arrival times show a queue growing on the downlink.

// Bandwidth usage, as the overuse detector sees it.
const (
	usageNormal = iota
	usageOver
	usageUnder
)

// trendline is the delay-based detector: packets are grouped by send time
// (5 ms bursts), each group's delay variation against the previous one
// accumulates, and the slope of its smoothed value over the last 20 groups,
// compared with an adaptive threshold, says whether a queue is growing.
type trendline struct {
	// The group being filled and the last complete one (µs).
	curFirstSend, curSend, curArrival int64
	curFirstArrival                   int64
	prevSend, prevArrival             int64
	haveCur, havePrev                 bool

	firstArrival  int64
	acc, smoothed float64 // ms
	window        [trendWindow][2]float64
	n             int // samples in window (ring)
	deltas        int
	prevTrend     float64
	threshold     float64
	lastThreshold int64
	overuseTime   float64 // ms; < 0 = not overusing
	overuseCount  int
	state         int
}

const (
	trendWindow   = 20
	groupSpan     = 5_000   // µs of send time per group
	burstArrival  = 5_000   // µs: a packet arriving this soon after its group joins it
	burstMaxSpan  = 100_000 // µs: a group grows by bursts for at most this long (in arrival time)
	trendGain     = 4.0
	overuseTimeMs = 10.0
)

func (t *trendline) add(sent, arrival int64, _ int) {
	if !t.haveCur {
		t.curFirstSend, t.curSend, t.curArrival, t.haveCur = sent, sent, arrival, true
		t.curFirstArrival = arrival
		return
	}
	if sent < t.curFirstSend {
		return // reordered: older than the group being filled
	}
	if sent-t.curFirstSend <= groupSpan || t.inBurst(sent, arrival) {
		t.curSend = max(t.curSend, sent)
		t.curArrival = max(t.curArrival, arrival)
		return
	}
	if t.havePrev {
		sendDelta := float64(t.curSend-t.prevSend) / 1000
		arrDelta := float64(t.curArrival-t.prevArrival) / 1000
		t.sample(arrDelta-sendDelta, sendDelta, t.curArrival)
	}
	t.prevSend, t.prevArrival, t.havePrev = t.curSend, t.curArrival, true
	t.curFirstSend, t.curSend, t.curArrival = sent, sent, arrival
	t.curFirstArrival = arrival
}

// inBurst: packets that arrive back to back, sooner than they were sent
// apart, were queued together somewhere: one group. So is a packet sent
// with the group's latest (a frame's packets leave in one sendmmsg, with
// one stamp), as in libwebrtc's InterArrival. Without that, a receiver
// that stalled and then read 200 ms of frames at once had the burst
// joined one frame at a time: each frame's second packet (the same send
// time as the first, so not "sooner than sent apart") started a new group,
// six groups arrived at one instant, and their delay variations (+165 ms,
// then -33 ms five times) read as a queue: overuse, and the estimate cut
// to 85% of what was flowing, below the layer that was flowing (a busy
// client machine, or a test process beside busy loops, moved viewers down
// for bandwidth on a free link).
func (t *trendline) inBurst(sent, arrival int64) bool {
	if sent <= t.curSend {
		return true
	}
	arr := arrival - t.curArrival
	return arr >= 0 && arr < burstArrival && arr-(sent-t.curSend) < 0 &&
		arrival-t.curFirstArrival < burstMaxSpan
}

// sample takes one group's delay variation (ms), the send time between
// the groups (ms) and the group's arrival (µs).
func (t *trendline) sample(delta, sendDelta float64, arrival int64) {
	if t.deltas == 0 {
		t.firstArrival = arrival
	}
	t.deltas = min(t.deltas+1, 1000)
	t.acc += delta
	t.smoothed = 0.9*t.smoothed + 0.1*t.acc
	t.window[t.n%trendWindow] = [2]float64{float64(arrival-t.firstArrival) / 1000, t.smoothed}
	t.n++
	trend := t.prevTrend
	if t.n >= trendWindow {
		trend = slope(&t.window)
	}
	t.detect(trend, sendDelta, arrival)
}

// slope is the least-squares slope of the window's (x, y) points.
func slope(w *[trendWindow][2]float64) float64 {
	var sx, sy float64
	for _, p := range w {
		sx += p[0]
		sy += p[1]
	}
	mx, my := sx/trendWindow, sy/trendWindow
	var num, den float64
	for _, p := range w {
		num += (p[0] - mx) * (p[1] - my)
		den += (p[0] - mx) * (p[0] - mx)
	}
	if den == 0 {
		return 0
	}
	return num / den
}

func (t *trendline) detect(trend, sendDelta float64, now int64) {
	m := float64(min(t.deltas, 60)) * trend * trendGain
	switch {
	case m > t.threshold:
		if t.overuseTime < 0 {
			t.overuseTime = sendDelta / 2
		} else {
			t.overuseTime += sendDelta
		}
		t.overuseCount++
		if t.overuseTime > overuseTimeMs && t.overuseCount > 1 && trend >= t.prevTrend {
			t.overuseTime, t.overuseCount = 0, 0
			t.state = usageOver
		}
	case m < -t.threshold:
		t.overuseTime, t.overuseCount = -1, 0
		t.state = usageUnder
	default:
		t.overuseTime, t.overuseCount = -1, 0
		t.state = usageNormal
	}
	t.prevTrend = trend
	t.adapt(m, now)
}

// adapt moves the threshold towards |m|: quickly down, slowly up, so
// jitter raises it and a real queue still crosses it.
func (t *trendline) adapt(m float64, now int64) {
	if t.lastThreshold == 0 {
		t.lastThreshold = now
	}
	am := math.Abs(m)
	if am > t.threshold+15 {
		t.lastThreshold = now // a spike: not a reason to move
		return
	}
	k := 0.0087
	if am < t.threshold {
		k = 0.039
	}
	dt := min(float64(now-t.lastThreshold)/1000, 100)
	t.threshold = max(6, min(t.threshold+k*(am-t.threshold)*dt, 600))
	t.lastThreshold = now
}
