package sfu

import (
	"github.com/starling-rtc/starling/internal/clock"
)

// When a down track asks its publisher for a keyframe: never while its
// subscriber cannot receive one, at most once per keyframeInterval while
// it waits, and at once when its connection comes up.

// keyframeDue reports whether to ask again for the keyframe this down track
// waits for; the receiver throttles per layer too. Call with d.mu held.
func (d *DownTrack) keyframeDue() bool {
	now := clock.Nanos()
	if now-d.lastAsk < int64(keyframeInterval) {
		return false
	}
	d.lastAsk = now
	return true
}

// askKeyframe asks the publisher for a keyframe on layer, but only when
// this down track can send it on: before its subscriber's connection is up
// the keyframe would go nowhere, and the request would hold back, by the
// receiver's per-layer throttle, the one transportReady makes when the
// connection comes up (a late joiner's first frame came ~0.33 s late).
func (d *DownTrack) askKeyframe(layer int8) {
	d.mu.Lock()
	ready := !d.unsupported && (d.connected == nil || d.connected.Load())
	d.mu.Unlock()
	if ready {
		d.src().RequestKeyframe(layer)
	}
}

// transportReady restarts video at a keyframe once media can reach the client.
func (d *DownTrack) transportReady() {
	if !d.video {
		return
	}
	d.mu.Lock()
	d.current = -1
	target, unsupported := d.target, d.unsupported
	d.mu.Unlock()
	if !unsupported {
		d.src().RequestKeyframe(target)
	}
}
