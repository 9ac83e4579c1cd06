package sfu

// Why a subscriber gets less than the best layer the publisher offers; the
// values are what subscriptionUpdated carries.
const (
	ReasonNone       = ""           // the best layer available
	ReasonSubscriber = "subscriber" // the subscriber's own cap (size, quality)
	ReasonBandwidth  = "bandwidth"  // the subscriber's downlink estimate
	ReasonPublisher  = "publisher"  // the publisher is not sending the wanted layer
)

// LayerWanter is a sink that tells which layer it would like; the publisher
// is asked to send only the layers some sink wants (dynacast).
type LayerWanter interface {
	DesiredLayer() int8
}

// selectLayer picks the layer to forward: the highest live layer not above
// min(capLayer, bwLayer); if none is live there, the lowest live one above
// (a bigger picture beats a frozen one). With nothing live, it keeps wanting.
func selectLayer(capLayer, bwLayer int8, present, live uint8) (int8, string) {
	want, reason := capLayer, ReasonSubscriber
	if bwLayer < want {
		want, reason = bwLayer, ReasonBandwidth
	}
	top := topLayer(present)
	if want >= top {
		want, reason = top, ReasonNone
	}
	if want < 0 {
		want = 0
	}
	if live == 0 {
		return want, reason
	}
	for l := want; l >= 0; l-- {
		if live&(1<<l) != 0 {
			if l < want {
				reason = ReasonPublisher
			}
			return l, reason
		}
	}
	for l := want + 1; l < MaxLayers; l++ {
		if live&(1<<l) != 0 {
			return l, ReasonPublisher
		}
	}
	return want, reason
}

// topLayer is the highest layer present, 0 when none.
func topLayer(present uint8) int8 {
	for l := int8(MaxLayers - 1); l > 0; l-- {
		if present&(1<<l) != 0 {
			return l
		}
	}
	return 0
}

// SetLimits sets the subscriber's cap and its bandwidth share as layers;
// Reselect applies them.
// A bandwidth layer below 0 pauses the track until bandwidth allows again;
// it then restarts at a keyframe.
func (d *DownTrack) SetLimits(capLayer, bwLayer int8) {
	d.mu.Lock()
	d.capLayer, d.bwLayer = capLayer, bwLayer
	wasPaused := d.bwPaused
	d.bwPaused = bwLayer < 0
	resume := wasPaused && !d.bwPaused && d.video
	if resume {
		d.current = -1
	}
	target := d.target
	d.mu.Unlock()
	if resume {
		d.askKeyframe(target)
	}
}

// BandwidthPaused reports whether the allocator gave this track nothing.
func (d *DownTrack) BandwidthPaused() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.bwPaused
}

// Limits returns the cap and bandwidth layers.
func (d *DownTrack) Limits() (capLayer, bwLayer int8) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.capLayer, d.bwLayer
}

// DesiredLayer is the layer this subscriber would take if the publisher sent
// everything: its cap limited by its bandwidth share.
func (d *DownTrack) DesiredLayer() int8 {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.paused {
		return -1
	}
	return min(d.capLayer, d.bwLayer)
}

// Reselect recomputes the target layer from the limits and the layers live
// now. It returns the target, why it is not the best, and whether either
// changed since the last call.
func (d *DownTrack) Reselect() (layer int8, reason string, changed bool) {
	if !d.video {
		return 0, ReasonNone, false
	}
	present := d.src().Layers()
	live := d.src().LiveLayers()
	d.mu.Lock()
	layer, reason = selectLayer(d.capLayer, d.bwLayer, present, live)
	changed = layer != d.lastSel || reason != d.lastReason || !d.selected
	d.lastSel, d.lastReason, d.selected = layer, reason, true
	d.mu.Unlock()
	d.SetTarget(layer)
	return layer, reason, changed
}
