package sfu

// Feedback timeout. A link that drops every packet (a dead Wi-Fi, a
// throttle narrower than one packet) sends no transport-wide feedback at
// all, and an estimator that moves only on feedback keeps its estimate:
// the allocator goes on sending the top layer into a link that passes
// nothing, and floods it when it comes back. So when feedback stops while
// packets are outstanding, the estimate halves, once per fbTimeout, down to
// bweMin, and each cut counts as a lossy measurement (lossLimited), so the
// allocator may pause the track as it would on loss.
//
// A client on a starved machine also goes silent: it stops reading, then
// reads everything at once (stalls of 0.2-1.3 s were seen on this machine
// beside busy loops). Its feedback, when it comes, reports the packets
// sent during the silence as received; then the cut was wrong, and is
// undone at once (the estimate and the loss cap back to what they were,
// counted as a raise so the allocator restores the layers without waiting).
// A link that was dead reports those packets lost, or not at all: the cut
// stands, and the link comes back to a lower estimate and a probe.

// fbTimeout is how long feedback may be missing before the estimate is
// cut, and the interval of further cuts. Clients report every 50-100 ms
// whatever the round trip (a long round trip delays the reports, it does
// not space them out), so 1 s is ten missed reports; shorter, and the
// routine stalls of a busy client (above) would cut and restore layers
// every few seconds.
//
// The packets outstanding must also be old enough: sent more than
// fbTimeout plus the link's report delay ago (reportWait). The report of a
// packet comes a round trip (and up to a report interval) after it is
// sent, so after a silence on our side (a paused track, then a probe or a
// resume) the first report is a round trip away, while the last feedback
// is long past. With a fixed 1 s, a link whose round trip neared 1 s (a
// satellite hop, a bloated mobile queue) was cut at every probe from a
// paused track. A dead link is caught as soon as before: its last feedback
// comes a round trip after it died, and then 1 s of silence cuts.
//
// libwebrtc's GoogCC backs off when the round trip plus the time since the
// last feedback passes 3 s (RttBasedBackoff); here the round trip instead
// widens what counts as silence, because the cut is for dead links, not
// for slow ones.
const fbTimeout = 1_000_000

// reportDelayMax bounds the report delay a timeout waits for: a link whose
// reports take longer still gets cut within fbTimeout + 3 s of sending.
const reportDelayMax = 3_000_000

// noteReportDelay smooths the delay d (µs) from the send of the newest
// packet a feedback reports received to the feedback's reception: the
// round trip plus the receiver's report interval. Call with b.mu held.
func (b *bwe) noteReportDelay(d int64) {
	d = max(d, 0)
	if b.reportDelay == 0 {
		b.reportDelay = d
		return
	}
	b.reportDelay += (d - b.reportDelay) / 8
}

// reportWait is how long a packet may go unreported, with no feedback
// either, before the silence cuts the estimate. Call with b.mu held.
func (b *bwe) reportWait() int64 {
	return fbTimeout + min(b.reportDelay, reportDelayMax)
}

// fbTimeoutMinOutstanding is how many packets must be outstanding for a
// silence to count when the oldest of them is no longer in the history.
const fbTimeoutMinOutstanding = 64

// feedbackSeen notes a feedback reporting up to end (the sequence number
// after its last), applied at now. Call with b.mu held.
func (b *bwe) feedbackSeen(end uint16, now int64) {
	if !b.haveFb || int16(end-b.fbNext) > 0 {
		b.fbNext = end
	}
	b.haveFb, b.lastFb = true, now
}

// checkFeedback cuts the estimate if no feedback came for fbTimeout while
// packets were outstanding: the oldest unreported one (the one after the
// last report) sent over reportWait ago, up to newest, the last numbered.
// The allocator calls it every round (EstimatedBitrate).
func (b *bwe) checkFeedback(now int64, newest uint16) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.haveFb || now-b.lastFb < fbTimeout || now-b.lastCut < fbTimeout {
		return
	}
	out := newest - b.fbNext + 1 // packets outstanding
	if out == 0 || out >= 0x8000 {
		return // nothing sent since the last report (a paused track): silence is normal
	}
	_, oldestCluster, sent, ok := b.hist.get(b.fbNext, now)
	if ok {
		if now-sent < b.reportWait() {
			return
		}
	} else if out < fbTimeoutMinOutstanding {
		return // not stamped yet, or cannot tell
	}
	_, newestCluster, sent, newestOK := b.hist.get(newest, now)
	if ok && newestOK && oldestCluster != 0 && newestCluster == oldestCluster {
		// Every packet outstanding is one probe's, and nothing was sent
		// after it: its tail was lost, on a link that delivered its
		// head. The check below misses this when the tail is longer
		// than the client's report interval: the report of the last
		// packet delivered then comes before the tail is sent (a 300 ms
		// probe into a 150 kbit/s link delivers its first burst and
		// drops the rest). The probe's own verdict already refuses a
		// lossy probe; a cut here halved the estimate of a paused
		// track, and marked its link lossy, between two probes
		// (TestBWEFeedbackTimeoutLongLostTail). A dead link is still
		// cut once anything else is sent into it: media, or the next
		// probe (the packets outstanding then span two clusters).
		return
	}
	if newestOK && sent < b.lastFb {
		// Nothing sent since the last feedback came: the receiver was
		// alive after the outstanding packets left, and nothing after
		// them could reveal their loss. That is a lost tail (a probe's
		// last packets dropped by a narrow link, the track paused since),
		// not a dead link: while paused on a live 150 kbit/s link, one
		// probe in two was cut here (TestCongestionPausedRecovers). A
		// dead link is cut once something is sent into it.
		return
	}
	if b.cutFrom == 0 {
		b.cutFrom, b.cutCap, b.cutAt = b.target.Load(), b.loss.cap, now
		b.cutLossy = [2]int64{b.loss.lossyAt, b.loss.lossyPrev}
	}
	t := max(bweMin, float64(b.target.Load())/2)
	b.aimd.rate = t
	b.aimd.state = aimdHold
	if b.loss.cap > 0 {
		b.loss.cap = min(b.loss.cap, t)
	}
	b.loss.lossyPrev, b.loss.lossyAt = b.loss.lossyAt, now
	b.lastCut = now
	b.graceUntil = 0
	counters.bweFeedbackTimeouts.Add(1)
	b.counts.feedbackTimeouts.Add(1)
	b.publish(false)
}

// afterSilence decides, on the first feedback after a timeout cut that
// reports packets sent before the cut, whether the silence was a stalled
// reader (they arrived: recv of them received, lost lost) and the cut is
// undone. Call with b.mu held.
func (b *bwe) afterSilence(recv, lost int) {
	if b.cutFrom == 0 {
		return
	}
	if recv >= 10 && lost*10 < recv {
		b.aimd.rate = max(b.aimd.rate, float64(b.cutFrom))
		b.loss.cap = b.cutCap
		b.loss.lossyAt, b.loss.lossyPrev = b.cutLossy[0], b.cutLossy[1]
		b.raises.Add(1)
		b.publish(true)
	}
	b.cutFrom = 0
}
