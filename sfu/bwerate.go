package sfu

import "math"

// AIMD rate control states.
const (
	aimdHold = iota
	aimdIncrease
	aimdDecrease
)

// aimd turns the detector's verdicts into a rate, as libwebrtc's
// AimdRateControl does: on overuse, 85% of what the receiver acknowledged
// (at most once per 200 ms, one decrease per congestion event); while
// normal, +8%/s far from the last known capacity and about a packet per
// response time near it; never above 1.5× the acknowledged rate by
// increase, so an application-limited sender (an SFU forwarding a 1.5
// Mbit/s layer) neither inflates its estimate without evidence nor loses it.
type aimd struct {
	rate         float64 // bits/s
	state        int
	last         int64 // µs of the last update
	lastDecrease int64
	avgMax       float64 // kbit/s acknowledged at decreases; < 0 = unknown
	varMax       float64
}

const (
	aimdBeta        = 0.85
	aimdDecreaseGap = 200_000 // µs between decreases
	aimdResponse    = 300_000 // µs: a round trip and then some, for the additive step
)

func (a *aimd) update(usage int, acked float64, now int64) {
	switch usage {
	case usageOver:
		a.state = aimdDecrease
	case usageUnder:
		a.state = aimdHold
	default:
		if a.state == aimdHold {
			a.state = aimdIncrease
		}
	}
	dt := int64(0)
	if a.last != 0 {
		dt = min(now-a.last, 1_000_000)
	}
	a.last = now
	switch a.state {
	case aimdIncrease:
		if a.avgMax >= 0 && acked > 0 {
			if sd := math.Sqrt(a.varMax * a.avgMax); acked/1000 > a.avgMax+3*sd {
				a.avgMax = -1 // well past the old capacity: it moved
			}
		}
		var inc float64
		if a.avgMax >= 0 {
			inc = 9600 * float64(dt) / aimdResponse // ~one 1200-byte packet per response time
		} else {
			inc = a.rate * (math.Pow(1.08, float64(dt)/1e6) - 1)
		}
		r := a.rate + inc
		if acked > 0 {
			if limit := 1.5*acked + 10_000; r > limit {
				r = max(a.rate, limit)
			}
		}
		a.rate = r
	case aimdDecrease:
		if now-a.lastDecrease >= aimdDecreaseGap {
			r := aimdBeta * a.rate
			if acked > 0 {
				r = min(aimdBeta*acked, a.rate)
				a.observeMax(acked / 1000)
			}
			a.rate = max(r, bweMin)
			a.lastDecrease = now
		}
		a.state = aimdHold
	}
}

// observeMax keeps the mean and variance of the capacity seen at decreases.
func (a *aimd) observeMax(kbps float64) {
	const alpha = 0.05
	if a.avgMax < 0 {
		a.avgMax = kbps
	} else {
		a.avgMax = (1-alpha)*a.avgMax + alpha*kbps
	}
	norm := max(a.avgMax, 1)
	a.varMax = (1-alpha)*a.varMax + alpha*(a.avgMax-kbps)*(a.avgMax-kbps)/norm
	a.varMax = max(0.4, min(a.varMax, 2.5))
}

// probeClusters measures one probe at a time: every packet sent while it
// runs (media and padding) belongs to it. Once it has ended and its
// feedback is in, its rate is the lower of the rates it was sent and
// received at; a receive rate well below the send rate means the probe
// filled the link, whose rate is then a little under that.
//
// Its feedback is in once a report reaches the probe's last packet
// (lastSeq, received or lost). It used to be "150 ms after the probe
// ended", judged at the next feedback: a track paused for bandwidth sends
// nothing but the probe, so its client's last report came within its
// 100 ms interval of the probe's end, no later feedback came at all, and
// the result was never taken. Probe after probe found the room and none
// counted; recovery waited for the loss cap's slow climb (40-60 s, or
// never within a test's minute). A probe whose last packets go unreported
// (lost, or the report lost) is settled probeSettleMax after its end.
type probeClusters struct {
	id                 uint16
	active, ended      bool
	covered            bool   // a report reached lastSeq
	lastSeq            uint16 // the last transport-wide sequence number sent in the probe
	endAt              int64
	minSend, maxSend   int64
	minArr, maxArr     int64
	bytes, count, lost int
}

const (
	probeMinPackets = 10
	// probeSettleMax is how long after a probe's end its result waits for
	// a report of its last packet (µs): several feedback intervals, and
	// time for a client on a busy machine to send them.
	probeSettleMax = 1_000_000
)

func (p *probeClusters) start(id uint16, _ int64) {
	*p = probeClusters{id: id, active: true}
}

// end closes the probe at now; lastSeq is the last sequence number sent
// in it.
func (p *probeClusters) end(now int64, lastSeq uint16) {
	if p.active {
		p.active, p.ended, p.endAt, p.lastSeq = false, true, now, lastSeq
	}
}

// onReport notes that feedback reported packet seq (received or lost).
func (p *probeClusters) onReport(seq uint16) {
	if p.ended && !p.covered && int16(seq-p.lastSeq) >= 0 {
		p.covered = true
	}
}

func (p *probeClusters) onAck(cluster uint16, sent, arrival int64, size int) {
	if cluster == 0 || cluster != p.id {
		return
	}
	if p.count == 0 {
		p.minSend, p.maxSend, p.minArr, p.maxArr = sent, sent, arrival, arrival
	}
	p.minSend, p.maxSend = min(p.minSend, sent), max(p.maxSend, sent)
	p.minArr, p.maxArr = min(p.minArr, arrival), max(p.maxArr, arrival)
	p.bytes += size
	p.count++
}

func (p *probeClusters) onLost(cluster uint16) {
	if cluster != 0 && cluster == p.id {
		p.lost++
	}
}

// result is the finished probe's rate, once.
func (p *probeClusters) result(now int64) (float64, bool) {
	if !p.ended || (!p.covered && now-p.endAt < probeSettleMax) {
		return 0, false
	}
	p.ended = false
	sendDur, arrDur := p.maxSend-p.minSend, p.maxArr-p.minArr
	if p.count < probeMinPackets || sendDur <= 0 || arrDur <= 0 || p.lost*10 > p.count+p.lost {
		return 0, false // too little to measure, or lossy: not evidence of room
	}
	// The last packet sent and the first received do not count towards
	// the durations they end or start.
	bits := float64(p.bytes) * 8 * float64(p.count-1) / float64(p.count)
	send, recv := bits*1e6/float64(sendDur), bits*1e6/float64(arrDur)
	if recv < 0.9*send {
		return 0.95 * recv, true
	}
	return min(send, recv), true
}
