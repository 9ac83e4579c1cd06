package sfu

// OnKeyframeRequestSent makes f hear of every keyframe request the receiver
// decides to send its publisher, with the layer and the clock.Nanos time of
// the decision the throttle (keyframeInterval) judged. The times a
// publisher reads requests at are no measure of the throttle: a reader
// starved of CPU reads two requests sent a window apart together (seen in
// TestKeyframeRequestsBoundedWhenUnanswered); these are the server's own.
// f runs on the requesting goroutine and must not block; nil removes it.
func (r *Receiver) OnKeyframeRequestSent(f func(layer int8, at int64)) {
	if f == nil {
		r.keySent.Store(nil)
		return
	}
	r.keySent.Store(&f)
}
