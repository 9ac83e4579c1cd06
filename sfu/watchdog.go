package sfu

import (
	"log/slog"
	"slices"

	"github.com/pion/webrtc/v4"
	"github.com/starling-rtc/starling/internal/clock"
)

// The start watchdog: a viewer must never sit without video. Issue 18
// found one viewer in a 300-viewer webinar whose video never started while
// every other stream was perfect. Two causes were found and fixed
// (reordered connection-state callbacks left the connected flag down,
// peer.go; a stream that started near sequence number 65535 could not be
// decrypted by a viewer that lost its first packets, initialseq.go); this
// watchdog covers whatever else may leave a down track silent while its
// source flows, and says in the log which state it found it in; a stream
// the server sends but the viewer never reports receiving (it cannot
// decrypt it, or never reads it) is logged too (checkUnheard).
//
// The subscriber's loop calls Subscriber.CheckStalled every allocation
// round (500 ms).

// stallAfter is how long a video down track that should be sending may
// send nothing before the watchdog acts: longer than a keyframe takes to
// come (the publisher answers a request within a frame or two; periodic
// keyframes come every 2 s or so).
const stallAfter = 3_000_000_000 // ns

// connectedGrace is how long the connection may be connected while its
// flag says otherwise before the watchdog repairs it.
const connectedGrace = 1_000_000_000 // ns

// stallWatch is a down track's watchdog state, under d.mu.
type stallWatch struct {
	packets uint64 // the count when last seen moving
	since   int64  // unix ns since when it has not moved while it should have
	warned  bool
	first   int64 // unix ns of the first check
	told    bool  // "never sent" logged
	unheard bool  // "sent but never reported received" logged
	sending int64 // unix ns of the first check that found packets sent
}

// unheardPackets and unheardAfter: a down track that has sent this many
// packets, and has been sending this long, without its subscriber ever
// reporting one received is logged. Long: a starved client reads its
// first packets late (a 200-viewer run on a loaded machine started media
// 18 s after publishing at the median, and 10 s logged 89 streams that all
// started later).
const (
	unheardPackets = 100
	unheardAfter   = 30_000_000_000 // ns
)

// neverSentAfter is when a video down track that has sent nothing at all,
// though neither paused nor without a source, is logged with its state
// (not negotiated? not connected?), whether or not the watchdog can act.
const neverSentAfter = 10_000_000_000 // ns

// CheckStalled restarts the subscriber's silent video down tracks at a
// keyframe, logs any down track (audio too) that never sent, and repairs a connected flag a missed state change left down.
// Call it from one goroutine (the subscriber's loop).
func (s *Subscriber) CheckStalled(log *slog.Logger) {
	now := clock.Nanos()
	if s.pc.ConnectionState() != webrtc.PeerConnectionStateConnected || s.connected.Load() {
		s.downSince = 0
	} else if s.downSince == 0 {
		// Usually pion's state-change goroutine has just not run yet
		// (a busy machine): only a flag still down a round later is
		// a missed change.
		s.downSince = now
	} else if now-s.downSince >= connectedGrace {
		s.downSince = 0
		s.stateMu.Lock()
		fixed := s.pc.ConnectionState() == webrtc.PeerConnectionStateConnected && !s.connected.Swap(true)
		if fixed && s.onConnect != nil {
			s.onConnect()
		}
		s.stateMu.Unlock()
		if fixed {
			counters.stallRestarts.Add(1)
			if log != nil {
				log.Warn("subscriber connection connected but marked down: repaired")
			}
		}
	}
	s.dmu.Lock()
	down := make([]*DownTrack, 0, len(s.down))
	for _, d := range s.down {
		down = append(down, d)
	}
	s.dmu.Unlock()
	heardAny := false
	for _, d := range down {
		d.checkStalled(now, log)
		heardAny = heardAny || d.heardFrom()
	}
	for _, d := range down {
		d.checkUnheard(now, heardAny, log)
	}
}

// heardFrom reports whether the subscriber's receiver reports said it
// received a packet of d.
func (d *DownTrack) heardFrom() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.heard
}

// checkUnheard logs, once, a down track that has sent unheardPackets and
// more, sending for unheardAfter, while its subscriber, whose receiver reports
// say it receives other tracks (heardAny), never reported a packet of this
// one: media that leaves the server and never plays (issue 18: a stream
// the viewer cannot decrypt, or that its client never started reading).
// The other checks cannot see that: the down track is sending.
func (d *DownTrack) checkUnheard(now int64, heardAny bool, log *slog.Logger) {
	sent := d.packets.Load()
	d.mu.Lock()
	w := &d.stall
	if sent > 0 && w.sending == 0 {
		w.sending = now
	}
	if !heardAny || d.heard || w.unheard || w.sending == 0 || now-w.sending < unheardAfter || sent < unheardPackets || log == nil {
		d.mu.Unlock()
		return
	}
	w.unheard = true
	ssrc := d.ssrc
	d.mu.Unlock()
	log.Warn(kindName(d.video)+" down track sends, but its subscriber never reported receiving a packet of it",
		"track", d.id, "ssrc", ssrc, "packets", sent, "sendingSeconds", (now-w.sending)/1e9)
}

// checkStalled restarts d at a keyframe when it has sent nothing for
// stallAfter although it should have: video, negotiated, connected, not
// paused by anyone, and its wanted layer live at the publisher.
func (d *DownTrack) checkStalled(now int64, log *slog.Logger) {
	live := d.src().LiveLayers()
	d.mu.Lock()
	w := &d.stall
	sent := d.packets.Load()
	connected := d.connected == nil || d.connected.Load()
	want := d.target
	if !d.video {
		want = 0 // audio has one layer; its target stays at the top
	}
	should := d.bound && !d.closed && !d.paused && !d.bwPaused && connected && live&(1<<want) != 0
	if w.first == 0 {
		w.first = now
	}
	expected := !d.paused && !d.bwPaused && !d.closed && live&(1<<want) != 0 // the viewer expects media
	if sent == 0 && expected && !w.told && now-w.first >= neverSentAfter && log != nil {
		w.told = true
		log.Warn(kindName(d.video)+" down track has sent nothing since it was subscribed", "track", d.id,
			"seconds", (now-w.first)/1e9, "bound", d.bound, "connected", connected, "paused", d.paused,
			"bandwidthPaused", d.bwPaused, "closed", d.closed, "current", d.current, "target", d.target, "live", live,
			// queued: written by the forwarder, not yet by the writer
			// goroutine (a starved process); failed: writes that erred.
			"queued", d.queued(), "failed", d.dropped.Load(), "unsupported", d.unsupported, "sink", d.sinkState())
	}
	if !d.video {
		// Audio needs no keyframe to start: nothing to restart, but a
		// listener without sound is logged all the same (a load run
		// once saw one audio stream of 400 never start).
		d.mu.Unlock()
		return
	}
	if moved := sent != w.packets; !should || moved || w.since == 0 {
		if moved {
			w.warned = false
		}
		w.packets, w.since = sent, now
		d.mu.Unlock()
		return
	}
	if now-w.since < stallAfter {
		d.mu.Unlock()
		return
	}
	current, target := d.current, d.target
	d.current = -1 // restart at the next keyframe of the wanted layer
	d.lastAsk = now
	w.since = now
	warn := !w.warned
	w.warned = true
	d.mu.Unlock()
	counters.stallRestarts.Add(1)
	if warn && log != nil {
		log.Warn("video down track silent while its source flows: restarting it at a keyframe",
			"track", d.id, "packets", sent, "current", current, "target", target, "live", live, "sink", d.sinkState())
	}
	d.src().RequestKeyframe(target)
}

func kindName(video bool) string {
	if video {
		return "video"
	}
	return "audio"
}

// sinkState says whether d is among its receiver's sinks (it is fed
// packets): "yes", "no", or "unknown" for another kind of source.
func (d *DownTrack) sinkState() string {
	r, ok := d.src().(*Receiver)
	if !ok {
		return "unknown"
	}
	if slices.Contains(r.Sinks(), Sink(d)) {
		return "yes"
	}
	return "no"
}
