package room

import (
	"sort"
	"time"

	"github.com/pion/webrtc/v4"
	"github.com/starling-rtc/starling/protocol"
	"github.com/starling-rtc/starling/sfu"
)

// Bandwidth allocation timing.
const (
	allocateEvery  = 500 * time.Millisecond
	upgradeTicks   = 3                      // an upgrade must be affordable this many ticks in a row (unless a probe just showed it)
	pauseTicks     = 4                      // a track is paused only after this many short ticks in a row
	probeFor       = 300 * time.Millisecond // one probe: the estimator measures it as a cluster (sfu/bwe.go)
	probeBackoffLo = time.Second            // wait after a probe that did not help...
	probeBackoffHi = 2 * time.Second        // ...doubling up to this: recovery after congestion takes at most one of these
	switchWaitMax  = 2 * time.Second        // how long a pending layer switch holds the next probe back
	// While every video track is paused for bandwidth (nothing flows to
	// measure), a probe every other round, shorter: see pausedProbe.
	probePausedEvery  = time.Second
	probePausedMin    = 150 * time.Millisecond
	probePausedPacket = 20     // padding packets a probe from the paused state carries at least (the estimator measures 10)
	audioReserve      = 64_000 // bits/s kept for each audio track
	holdMargin        = 15     // % of the estimate a track may overrun before it is switched down
	pauseMargin       = 33     // % of the estimate a track's lowest layer may overrun before it is paused
)

// allocState is a subscriber's allocation memory, owned by its loop.
type allocState struct {
	up        map[string]int // consecutive ticks an upgrade was affordable, by track id
	short     map[string]int // consecutive ticks not even the lowest layer was affordable
	nextProbe time.Time
	backoff   time.Duration
	probing   bool
	probeEst  uint64    // estimate when the probe started
	raises    uint64    // the subscriber's probe raises seen (sfu.Subscriber.ProbeRaises)
	steppedAt time.Time // when a track was last raised
	// Scratch reused by every round (two a second per subscriber, plus
	// one per estimate change): fewer allocations for the GC.
	ids     []string
	items   []allocItem
	demands []sfu.Demand
	layers  sfu.AllocScratch
}

// allocItem is one video track in an allocation round.
type allocItem struct {
	t *Track
	d *sfu.DownTrack
}

// tickAllocations posts an allocation round every allocateEvery until the loop quits.
func (l *subscriberLoop) tickAllocations() {
	t := time.NewTicker(allocateEvery)
	defer t.Stop()
	// Bound once: a method value made at each tick is an allocation.
	allocate, checkStalled := l.allocate, l.checkStalled
	for {
		select {
		case <-l.quit:
			return
		case <-t.C:
			l.post(allocate)
			l.post(checkStalled)
		}
	}
}

// checkStalled restarts the subscriber's video that sits silent while its
// publisher sends (sfu/watchdog.go: a viewer must never sit without video).
func (l *subscriberLoop) checkStalled() {
	if l.started {
		l.p.sub.CheckStalled(l.p.log)
	}
}

// allocate splits the subscriber's downlink estimate over its video tracks,
// lowering layers at once and raising them only after the estimate has held
// (and, when needed, after a padding probe showed the room is there).
func (l *subscriberLoop) allocate() {
	est := l.p.sub.EstimatedBitrate()
	if est == 0 || !l.started {
		return // bandwidth estimation off, or nothing negotiated yet
	}
	// A probe that raised the estimate is the evidence an upgrade waits
	// for: no need to wait upgradeTicks more.
	// The estimator's count of raises says so whenever the result came
	// in: a round that ran between the probe's end and its feedback
	// (150 ms or more later) used to take it as a failed probe, and the
	// upgrade then waited upgradeTicks, long enough on a busy machine for
	// a delay verdict to undo it. Without TWCC (no measured probes), an
	// estimate that grew over the probe counts.
	probed := false
	if r := l.p.sub.ProbeRaises(); r != l.alloc.raises {
		l.alloc.raises, probed = r, true
	}
	if l.alloc.probing && !l.p.sub.Probing() {
		l.alloc.probing = false
		probed = probed || est > l.alloc.probeEst
	}
	if probed {
		l.alloc.backoff = probeBackoffLo // a raise, even one no layer fits yet
	}
	budget := est
	if l.alloc.up == nil {
		l.alloc.up = map[string]int{}
		l.alloc.short = map[string]int{}
		l.alloc.backoff = probeBackoffLo
	}
	items, demands, ids := l.alloc.items[:0], l.alloc.demands[:0], l.alloc.ids[:0]
	defer func() {
		clear(items) // no track kept alive by the scratch
		l.alloc.items, l.alloc.demands, l.alloc.ids = items[:0], demands[:0], ids[:0]
	}()
	for id := range l.down {
		ids = append(ids, id)
	}
	sort.Strings(ids) // map order is random: the allocator's ties must not be
	for _, id := range ids {
		d := l.down[id]
		t := l.tracks[id]
		if t == nil {
			continue
		}
		if t.kind != webrtc.RTPCodecTypeVideo {
			budget -= min(budget, audioReserve)
			continue
		}
		if d.Paused() {
			continue
		}
		capL, cur := d.Limits()
		prio := t.priority(capL, l.p.room.IsActiveSpeaker(t.owner.id))
		demands = append(demands, sfu.Demand{Priority: prio, Cap: capL, Costs: t.layerCosts(), Current: cur})
		items = append(items, allocItem{t, d})
	}
	if len(items) == 0 {
		return
	}
	alloc := l.alloc.layers.WithHold(budget, holdMargin, demands)
	// Pausing is for a downlink that cannot carry even the lowest layer,
	// not for an estimate a little short of it: a delay-based decrease
	// lands at 85% of what was flowing, and a track whose only layer
	// that is would otherwise pause although everything arrives.
	keep := l.alloc.layers.Allocate(budget+budget*pauseMargin/100, demands)
	lossy := l.p.sub.LossLimited()
	var wantMore, minStep, sending, flowing uint64
	switching, stepped := false, false
	for i, it := range items {
		capL, cur := it.d.Limits()
		costs := demands[i].Costs
		next := alloc[i]
		if next >= 0 && nextLayer(costs, next, capL) < 0 {
			// All the cap allows: no bandwidth limit to record, so a later
			// cap raise takes effect at once (and is checked right away).
			next = sfu.MaxLayers - 1
		}
		if next < 0 && cur >= 0 {
			// Pausing is the most disruptive step, and a growing delay
			// alone (often just a busy receiver, reading its socket late)
			// can drop the estimate below the lowest layer: pause only
			// when the shortage is clear, lasts, and packets are being
			// lost. Until then the track keeps its lowest layer.
			l.alloc.short[it.t.id]++
			if l.alloc.short[it.t.id] < pauseTicks || keep[i] >= 0 || !lossy {
				next = lowestOf(costs)
			}
		} else {
			l.alloc.short[it.t.id] = 0
		}
		switch {
		case next > cur && cur >= 0 && nextLayer(costs, cur, capL) < 0:
			// cur was already "unlimited" for a lower cap.
		case next > cur:
			l.alloc.up[it.t.id]++
			if l.alloc.up[it.t.id] < upgradeTicks && !probed {
				next = cur
			} else {
				l.alloc.up[it.t.id] = 0
				l.alloc.backoff = probeBackoffLo // the probe (or the estimate) paid off
				stepped = stepped || probed
			}
		case next < cur:
			l.alloc.up[it.t.id] = 0
			// Just stepped down for bandwidth: a probe now would only
			// add to the congestion the estimate just reported.
			l.alloc.nextProbe = time.Now().Add(l.alloc.backoff)
		default:
			l.alloc.up[it.t.id] = 0
		}
		if next != cur {
			it.d.SetLimits(capL, next)
			l.reselect(it.t, it.d)
		}
		// The next step up: one layer above what this round gives (the
		// lowest layer for a paused track), what it adds to what flows.
		have := uint64(0)
		if got := layerAtMost(costs, min(next, capL)); got >= 0 {
			have = costs[got]
			sending += have
		}
		// What flows now: the layer forwarded, until the one just
		// allocated has its keyframe (nothing while waiting for it).
		if c := it.d.Current(); next >= 0 && c >= 0 && c < sfu.MaxLayers {
			flowing += costs[c]
		}
		if up := nextLayer(costs, next, capL); up >= 0 && costs[up] > have {
			step := costs[up] - have
			wantMore += step
			if minStep == 0 || step < minStep {
				minStep = step
			}
		}
		switching = switching || it.d.Current() != it.d.Target()
	}
	now := time.Now()
	if stepped {
		// A probe just opened a layer: probe for the next one now, not
		// after a backoff, so a paused track climbs back a layer a probe,
		// one probe after the other. The padding covers the layer just
		// opened until its media flows (probeRate's gap).
		l.alloc.steppedAt = now
		l.alloc.nextProbe = now
	} else if switching && now.Sub(l.alloc.steppedAt) < switchWaitMax {
		return // what flows is not yet what was allocated
	}
	probe := probeRate(est, est-budget, sending, flowing, wantMore, minStep)
	if probe == 0 || now.Before(l.alloc.nextProbe) {
		return
	}
	d, every := probeFor, probeFor+l.alloc.backoff
	if sending == 0 && flowing == 0 {
		d, every = pausedProbe(probe), probePausedEvery-allocateEvery/2
	}
	if l.p.sub.Probe(probe, d) {
		l.alloc.nextProbe = now.Add(every)
		l.alloc.backoff = min(2*l.alloc.backoff, probeBackoffHi)
		l.alloc.probing, l.alloc.probeEst = true, est
	}
}

// pausedProbe is how long a probe at rate lasts when every video track of
// the subscriber is paused for bandwidth: probePausedMin, or what carries
// probePausedPacket padding packets at rate, up to probeFor.
//
// Such probes come every probePausedEvery (every other round; the half
// round off the schedule is slack, so that the round due does not miss it
// by a millisecond and wait a round more), where a track with video
// flowing backs off to 1.3-2.3 s: once the link frees, the first probe
// that can show it is what a paused viewer waits for, and the 1-2 s
// backoff made that wait 2-2.5 s on its own (session 24: back on 720p 4.6
// s after the link freed, 2.2 s of it before the first probe). Half as long
// (150 ms at the usual rates), they pad a still narrow link with about as
// many bytes a second as the 300 ms probes every 2.5 s did. Not shorter: a
// policer that passes 100 ms of burst lets a probe of duration T through
// at up to (1 + 0.1 s/T) times its rate, so a shorter probe would find
// room that a layer then does not have, and the track would resume and
// pause again.
func pausedProbe(rate uint64) time.Duration {
	bits := uint64(probePausedPacket * 8 * sfu.PaddingWireSize)
	d := time.Duration(bits * uint64(time.Second) / max(rate, 1))
	return min(max(d, probePausedMin), probeFor)
}

// probeRate is the padding (bits/s, on top of the media) of a probe for the
// next step up: each track that wants more one layer up (want, the steps
// summed; minStep, the smallest), with the audio reserve, all 20% over,
// plus 10% of the video flowing (its costs carry 10% of keyframe headroom
// that the media does not send, and the probe's measured rate is media and
// padding). That is the estimate the allocator needs to take the step.
//
// sending is the video allocated, flowing what is forwarded now: a layer
// just opened sends nothing until its keyframe, so the padding also covers
// the gap between the two. Until session 24 the next step's probe waited
// for the layer's keyframe instead (500 ms at least, a round more in
// practice: about 0.9 s per layer of a paused track's climb).
//
// It is capped at the estimate itself, so that with the media a probe
// carries about twice what the link was last shown to carry (enough to
// find room, not enough to flood a link that has none), but it always
// covers one track's next step: layer costs grow about threefold a step
// (0.28, 0.55, 1.76 Mbit/s here), and a track whose step is above the
// estimate could otherwise never show it.
//
// Until 2026-12-07 the probe aimed at every track's top layer: a track
// paused for bandwidth was probed at 1.2 times its top layer's cost (3.3
// Mbit/s for a 720p layer costed at 2.76) whatever the estimate, on a link
// that might still carry 150 kbit/s, audio included.
func probeRate(est, reserve, sending, flowing, want, minStep uint64) uint64 {
	if want == 0 {
		return 0
	}
	gap := sending - min(sending, flowing)
	pad := func(step uint64) uint64 { return (step+reserve+gap)*12/10 + flowing/10 }
	return min(pad(want), max(est, pad(minStep)))
}

// layerAtMost is the highest layer up to l that the track has; -1 if none.
func layerAtMost(costs [sfu.MaxLayers]uint64, l int8) int8 {
	for ; l >= 0; l-- {
		if l < sfu.MaxLayers && costs[l] > 0 {
			return l
		}
	}
	return -1
}

// lowestOf is the lowest layer the track has.
func lowestOf(costs [sfu.MaxLayers]uint64) int8 {
	for l := int8(0); l < sfu.MaxLayers; l++ {
		if costs[l] > 0 {
			return l
		}
	}
	return 0
}

// nextLayer is the next layer above cur, up to capL, that the publisher has; -1 if none.
func nextLayer(costs [sfu.MaxLayers]uint64, cur, capL int8) int8 {
	for l := cur + 1; l <= capL && l < sfu.MaxLayers; l++ {
		if costs[l] > 0 {
			return l
		}
	}
	return -1
}

// priority orders tracks when bandwidth is short: screen shares first, then
// the active speaker's camera, then bigger requested sizes.
func (t *Track) priority(capLayer int8, speaking bool) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	p := int(capLayer)
	switch {
	case t.info.Source == protocol.SourceScreen:
		p += 100
	case speaking:
		p += 50
	}
	return p
}

// layerRates is what layerCosts reads of a source: a local publisher's
// receiver or a remote track's import (cluster/relay).
type layerRates interface {
	Layers() uint8
	LiveLayers() uint8
	Bitrate(layer int8) uint64
}

// lastRates is a source that remembers a stopped layer's rate
// (sfu.Receiver.LastBitrate).
type lastRates interface {
	LastBitrate(layer int8) uint64
}

// layerCosts is each layer's bitrate: measured while it flows (or when it
// last flowed, within a minute: sfu.Receiver.LastBitrate), estimated
// from its size otherwise; 0 for layers the track does not have.
func (t *Track) layerCosts() [sfu.MaxLayers]uint64 {
	// The source, not only a local receiver: a remote track's import
	// (another node's publisher) has layers and rates too. With no cost
	// at all the allocator found no layer to give and paused every
	// cross-node video for "bandwidth" whenever congestion control was on.
	r, _ := t.source().(layerRates)
	// The sizes of the layers the allocator can use, copied under the
	// lock into an array: a copy of the whole slice was an allocation
	// per video track per round.
	var sizes [sfu.MaxLayers][2]int
	t.mu.Lock()
	nLayers := len(t.info.Layers)
	for i := range min(nLayers, sfu.MaxLayers) {
		sizes[i] = [2]int{t.info.Layers[i].Width, t.info.Layers[i].Height}
	}
	t.mu.Unlock()
	var c [sfu.MaxLayers]uint64
	if r == nil {
		return c
	}
	present, live := r.Layers(), r.LiveLayers()
	for i := int8(0); i < sfu.MaxLayers; i++ {
		if present&(1<<i) == 0 && !(nLayers > int(i)) {
			continue
		}
		w, h := 0, 0
		if int(i) < nLayers {
			w, h = sizes[i][0], sizes[i][1]
		} else if i > 0 {
			continue
		}
		est := sfu.DefaultLayerCost(i, w, h)
		if nLayers == 0 {
			est = 500_000
		}
		if live&(1<<i) != 0 {
			if m := r.Bitrate(i); m > 0 {
				est = m + m/10 // headroom for keyframes
			}
		} else if lr, ok := r.(lastRates); ok {
			// Stopped (the publisher is told to stop a layer nobody
			// receives): what it measured when it last flowed, not the
			// size-based guess (2.76 Mbit/s for 720p where 1.6 flowed),
			// so a probe need not show more room than the layer needs.
			if m := lr.LastBitrate(i); m > 0 {
				est = m + m/10
			}
		}
		c[i] = est
	}
	return c
}
