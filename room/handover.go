package room

import (
	"maps"
	"slices"
	"time"

	"github.com/pion/webrtc/v4"
	"github.com/starling-rtc/starling/internal/clock"
	"github.com/starling-rtc/starling/sfu"
)

// A drain without a break (make-before-break, docs/cluster-failover.md
// "Drain (SIGTERM)"). When a participant moves from a draining node to
// another one:
//   - the draining node releases it but keeps its publisher connection and
//     its tracks' receivers forwarding to the relay (linger, below) until the
//     other nodes no longer import them;
//   - every other node keeps the tracks it knew of that participant
//     published, still fed by the draining node (retireStub), and the node
//     it resumes through gives the tracks it publishes again the same ids
//     (JoinRequest.carry, by the client's track id);
//   - when a track comes back under its id, each subscriber's down track goes
//     over to the new source without a break (spliceTrack, then
//     sfu.DownTrack.Handover): nobody sees the track end, and the old source
//     is let go once no subscriber uses it.
// A track that does not come back within the handover window ends as
// before.

// handoverWait is the least handover window: how long a moved
// participant's track stays published without its successor, and how long
// a draining node keeps forwarding a released participant's tracks. The
// window is the resume window when that is longer (handoverWindow).
const handoverWait = 10 * time.Second

// handoverWindow bounds each step of a move (the new connections, the
// tracks published again, their first packets) by the time the server gives
// a participant to come back anyway: the resume window, at least
// handoverWait. A fixed 10 s was less than a client may take within the
// server's other limits (a negotiation answered in 15 s, a connection up in
// 30 s): on a machine saturated under -race a drain's movers took 8-12 s,
// the draining node stopped relaying at 10 s, the other nodes ended the
// moved tracks, and the subscribers saw them end and start again
// (TestDrainHandsOver). A track whose participant leaves meanwhile ends at
// once (endMovedOf).
func (m *Manager) handoverWindow() time.Duration {
	return max(handoverWait, m.cfg.ResumeWindow)
}

// settleGrace: how long a released participant's old connections still
// serve it after its new node said the new ones are up: their first
// packets are on their way then (a new track's first packets, a busy
// machine).
const settleGrace = 500 * time.Millisecond

// settledFor reports whether the participant's new node said, at least d
// ago, that its new connections are up.
func (p *Participant) settledFor(d time.Duration) bool {
	at := p.settled.Load()
	return at != 0 && clock.Nanos()-at >= int64(d)
}

// carried is a moved participant's track, as the node it resumes through
// reuses its id.
type carried struct {
	id   string
	kind string
}

// retireStub removes the stub of a participant that moved to another node
// (or to this one), keeping its tracks published, fed by their old node,
// until they come back under the same ids. It returns them by the client's
// track id, and the node the participant was on.
func (r *Room) retireStub(id string) (carry map[string]carried, node string) {
	r.mu.Lock()
	p := r.remotes[id]
	if p == nil {
		r.mu.Unlock()
		return nil, ""
	}
	delete(r.remotes, id)
	r.mu.Unlock()
	p.mu.Lock()
	tracks := slices.Collect(maps.Values(p.tracks))
	p.closed = true
	p.mu.Unlock()
	out := map[string]carried{}
	for _, t := range tracks {
		t.mu.Lock()
		cid, kind := t.info.CID, t.info.Kind
		t.mu.Unlock()
		r.mu.Lock()
		kept := r.tracks[t.id] == t && cid != ""
		if kept {
			if r.moved == nil {
				r.moved = map[string]*Track{}
			}
			r.moved[t.id] = t
		}
		r.mu.Unlock()
		if !kept {
			r.unpublish(t)
			t.closeImport()
			continue
		}
		out[cid] = carried{id: t.id, kind: kind}
		t := t
		time.AfterFunc(r.m.handoverWindow(), func() { r.expireMoved(t) })
	}
	return out, p.node
}

// endMovedOf ends the moved tracks of a participant that left: they will
// not come back.
func (r *Room) endMovedOf(id string) {
	r.mu.Lock()
	var ts []*Track
	for _, t := range r.moved {
		if t.owner.id == id {
			ts = append(ts, t)
		}
	}
	r.mu.Unlock()
	for _, t := range ts {
		r.expireMoved(t)
	}
}

// expireMoved ends a moved track that did not come back.
func (r *Room) expireMoved(t *Track) {
	r.mu.Lock()
	still := r.moved[t.id] == t
	if still {
		delete(r.moved, t.id)
	}
	r.mu.Unlock()
	if still {
		r.unpublish(t)
		t.closeImport()
	}
}

// successorLocked returns the moved track t takes the place of, forgotten
// as moved, or nil. r.mu held.
func (r *Room) successorLocked(t *Track) *Track {
	old := r.moved[t.id]
	if old == nil || old == t || old.owner.id != t.owner.id || old.kind != t.kind || r.tracks[t.id] != old {
		return nil
	}
	delete(r.moved, t.id)
	return old
}

// spliceTrackLocked publishes t in the place of old (the same track of a
// participant that moved): the room is not told of a new track, only of
// what changed, and each subscriber's down track goes over to t's media.
// r.mu held; it is released.
func (r *Room) spliceTrackLocked(old, t *Track) {
	r.tracks[t.id] = t
	if r.mix.mx != nil {
		r.mix.mx.RemoveInput(old.id)
	}
	if t.kind == webrtc.RTPCodecTypeAudio && t.owner.node == "" {
		r.startSpeakers()
		r.mixInput(t)
	}
	if r.wantsRemoteLocked(t) {
		t.awaitImport(nil)
	}
	info := t.Info()
	if t.owner.node == "" {
		r.emit(Event{Type: EvPublished, Track: &info})
	}
	t.announced = old.announced // trackUpdated below tells what differs
	var subs []*Participant
	for _, o := range r.participants {
		if o.id != t.owner.id {
			subs = append(subs, o)
		}
	}
	// Subscribers that had old but no down track yet: its import from the
	// draining node was still under way, or failed (that node no longer
	// exports a track it released: "no such track published here"). They
	// take t. Left waiting for old, they never got the track again (a
	// participant resumed through a new node heard nobody who moved with it).
	old.mu.Lock()
	waiting := old.imp.waiting
	old.imp.waiting = nil
	old.mu.Unlock()
	r.mu.Unlock()
	t.owner.log.Info("track handed over without a break", "track", t.id)
	r.m.notifyUnpublished(r, old)
	r.m.notifyHandedOver(r, t)
	r.trackUpdated(t)
	for _, o := range subs {
		o := o
		o.loop.post(func() { o.loop.spliceOrAdd(old, t) })
	}
	for _, l := range waiting {
		l := l
		l.post(func() { l.addDownTrack(t) })
	}
	go r.letGo(old)
}

// spliceOrAdd makes a subscriber that forwarded old forward t instead; one
// that did not stays without it.
func (l *subscriberLoop) spliceOrAdd(old, t *Track) {
	if _, ok := l.down[t.id]; ok && l.tracks[t.id] == old {
		l.addDownTrack(t) // splices (spliceDownTrack)
	}
	// One that did not subscribe to old stays so (an automatic subscriber
	// that unsubscribed keeps it off, as for any track it turned off).
}

// spliceDownTrack moves d, the down track of prev, over to t (same id).
func (l *subscriberLoop) spliceDownTrack(prev, t *Track, d *sfu.DownTrack) {
	src := t.source()
	if src == nil {
		t.awaitImport(l) // addDownTrack runs again once the relay is there
		return
	}
	if !d.Handover(src) {
		// Another codec: the subscriber gets a new down track.
		l.removeDownTrack(t.id)
		l.addDownTrack(t)
		return
	}
	l.tracks[t.id] = t
	l.subsMu.Lock()
	l.subsDown[t.id] = subscription{t, d}
	l.subsMu.Unlock()
	l.apply(t, d)
}

// letGo ends old's media once no subscriber forwards it any more (each
// down track leaves it when the new source delivers), or after the handover
// window.
func (r *Room) letGo(old *Track) {
	start := time.Now()
	defer func() {
		old.owner.log.Info("moved track's old source let go", "track", old.id, "after", time.Since(start))
	}()
	deadline := start.Add(r.m.handoverWindow())
	for time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
		src := old.source()
		if src == nil {
			return
		}
		if s, ok := src.(interface{ Sinks() []sfu.Sink }); ok && len(s.Sinks()) == 0 {
			break
		}
	}
	if old.owner.node != "" {
		old.closeImport()
	}
}

// relayExport is a sink that sends a track to another node (the relay's
// export): a released participant's tracks linger while one is left.
type relayExport interface{ RelayExport() }

// detachLingering takes a released participant's track out of the room
// without a word: nobody is told it ended (it goes on under the same id
// through the participant's new node), its receiver keeps forwarding to the
// relay and to whoever still subscribes here.
func (r *Room) detachLingering(t *Track) {
	r.mu.Lock()
	if r.tracks[t.id] == t {
		delete(r.tracks, t.id)
	}
	if r.mix.mx != nil {
		r.mix.mx.RemoveInput(t.id)
	}
	r.mu.Unlock()
}

// linger waits, for a participant released by a draining node, until no
// other node imports its tracks (they switched to its new node) and its new
// node says its new connections are up (Settled: until then its old
// subscriber connection goes on serving it here), or the handover window,
// or Shutdown; then its tracks end and its connections close.
func (p *Participant) linger(tracks []*Track) {
	start := time.Now()
	deadline := start.Add(p.m.handoverWindow())
	for time.Now().Before(deadline) && (p.exported(tracks) || !p.settledFor(settleGrace)) && !p.m.shuttingDown.Load() {
		time.Sleep(50 * time.Millisecond)
	}
	p.log.Info("released participant's tracks no longer relayed", "after", time.Since(start))
	for _, t := range tracks {
		p.room.m.notifyUnpublished(p.room, t) // its exports end
		t.mu.Lock()
		rc := t.receiver
		t.mu.Unlock()
		if rc != nil {
			rc.Close()
		}
	}
}

// exported reports whether a relay export still takes one of tracks.
func (p *Participant) exported(tracks []*Track) bool {
	for _, t := range tracks {
		t.mu.Lock()
		rc := t.receiver
		t.mu.Unlock()
		if rc == nil {
			continue
		}
		for _, s := range rc.Sinks() {
			if _, ok := s.(relayExport); ok {
				return true
			}
		}
	}
	return false
}

// Settled marks a participant this draining node released as served by
// its new node (Bus.Settled): its lingering connections may close.
func (m *Manager) Settled(roomName, id string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if p := m.released[roomName+"\x00"+id]; p != nil {
		p.settled.CompareAndSwap(0, clock.Nanos())
		p.log.Info("released participant settled on its new node")
	}
}

// trackReleased keeps p findable by Settled while it lingers.
func (m *Manager) trackReleased(p *Participant, on bool) {
	key := p.room.name + "\x00" + p.id
	m.mu.Lock()
	defer m.mu.Unlock()
	if !on {
		if m.released[key] == p {
			delete(m.released, key)
		}
		return
	}
	if m.released == nil {
		m.released = map[string]*Participant{}
	}
	m.released[key] = p
}

// A participant taken over from a draining node waits for its new
// subscriber connection to deliver before telling that node, at most the
// handover window (the draining node lets go after that whatever it hears).

// subscriberUp runs once the participant's subscriber connection is up: a
// participant taken over from another node tells that node once the new
// connection delivers (every down track not paused has sent a packet).
// "Up" alone said nothing of the media: the tracks are offered after the
// connection is up, and on a loaded machine their first packets came later
// than the draining node's grace, which then closed the old connection
// while the new one was still silent (a listener moving off a draining node
// missed 4 frames under -race, 253 with the machine saturated).
func (p *Participant) subscriberUp() {
	if p.movedFrom == "" || !p.settledSent.CompareAndSwap(false, true) {
		return
	}
	bus := p.room.bus
	if bus == nil || p.movedFrom == bus.NodeID() {
		return
	}
	go func() {
		start := time.Now()
		wait := p.m.handoverWindow()
		for !p.delivering() && time.Since(start) < wait && !p.isClosed() {
			time.Sleep(20 * time.Millisecond)
		}
		p.log.Debug("new connections deliver: telling the node it moved from", "node", p.movedFrom, "after", time.Since(start))
		bus.Settled(p.movedFrom, p.room.name, p.id)
	}()
}

// delivering reports whether every down track of the participant that is
// not paused has sent a packet.
func (p *Participant) delivering() bool {
	for _, s := range p.Subscriptions() {
		if s.Down == nil || s.Down.Paused() {
			continue
		}
		if n, _ := s.Down.Stats(); n == 0 {
			return false
		}
	}
	return true
}

func (p *Participant) isClosed() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.closed
}
