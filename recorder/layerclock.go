package recorder

import "sync"

// A layer switch without sender reports maps the new layer's RTP time onto
// the file's timeline through this process's clock. Mapping it through the
// arrival of the switch's keyframe alone made files longer than their
// recording when that keyframe came late: a simulcast layer's first
// packets, held by pion until the server read the layer, reached the
// recorder in one burst up to seconds after they were sent (issue 17:
// under load a 5.7 s recording held a 9.8 s file; at load 20 a keyframe of
// the file's first instant was placed 0.6 s after it). A layerClock keeps,
// per layer, the packet that arrived earliest for its timestamp (the
// smallest arrival − RTP time): a delayed packet never moves it, so it
// maps any timestamp of the layer to when it would have arrived without
// the delay. Two layers of one encoder mapped that way differ by the
// difference of their shortest transits, a few milliseconds.

// clockWindow: the reference is the earliest-arriving packet of the last
// one or two windows, so that clock drift between the publisher and this
// process (parts per million) never adds up.
const clockWindow int64 = 5e9

// clockMaxAge: a reference older than this (a layer paused for long) is
// not used, and the layer's next packet replaces it; it also keeps RTP
// timestamp differences far from wrapping.
const clockMaxAge int64 = 60e9

// layerSettle: after the file began, the recorder switches to a layer only
// once its first packet is this old. The first packets of a layer can be a
// burst of old ones (above): its keyframe would be mapped through a clock
// not yet settled; the recorder asks for another keyframe meanwhile.
const layerSettle int64 = 300e6

// clockJump: a packet this much later than the reference predicts is not
// late: its stream's timestamps jumped (a new RTP base), and it becomes
// the reference. A packet really held that long only makes the reference
// worse until an earlier-arriving one replaces it.
const clockJump int64 = 5e9

type clockRef struct {
	ok bool
	ts uint32
	at int64 // monotonic ns (monoNow)
}

// lateness is how much later than ref's packet predicts a packet of ts
// arrived at at.
func (r clockRef) lateness(ts uint32, at int64, clock uint32) int64 {
	return (at - r.at) - int64(int32(ts-r.ts))*1e9/int64(clock)
}

type layerClock struct {
	mu    sync.Mutex
	first int64 // arrival of the layer's first packet; 0 = none yet
	ref   clockRef
	next  clockRef // the earliest-arriving packet of the current window
	since int64    // when the current window began
}

// observe notes one packet of the layer; it runs on the receiver's
// goroutine (WriteRTP): no allocation.
func (c *layerClock) observe(ts uint32, at int64, clock uint32) {
	c.mu.Lock()
	if c.first == 0 {
		c.first, c.since = at, at
	}
	if l := c.ref.lateness(ts, at, clock); !c.ref.ok || at-c.ref.at > clockMaxAge || l < 0 || l > clockJump {
		c.ref = clockRef{ok: true, ts: ts, at: at}
	}
	if l := c.next.lateness(ts, at, clock); !c.next.ok || l < 0 || l > clockJump {
		c.next = clockRef{ok: true, ts: ts, at: at}
	}
	if at-c.since >= clockWindow {
		c.ref, c.next, c.since = c.next, clockRef{}, at
	}
	c.mu.Unlock()
}

// settled reports whether the layer's first packet came layerSettle before now.
func (c *layerClock) settled(now int64) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.first != 0 && now-c.first >= layerSettle
}

// capture maps a timestamp of the layer to this process's clock (monotonic
// ns): when its packet arrived, or would have without a delay of its own.
func (c *layerClock) capture(ts uint32, now int64, clock uint32) (int64, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.ref.ok || now-c.ref.at > clockMaxAge {
		return 0, false
	}
	return c.ref.at + int64(int32(ts-c.ref.ts))*1e9/int64(clock), true
}
