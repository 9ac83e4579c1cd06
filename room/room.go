package room

import (
	"encoding/json"
	"maps"
	"reflect"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/pion/webrtc/v4"
	"github.com/starling-rtc/starling/internal/clock"
	"github.com/starling-rtc/starling/protocol"
)

// Room is a set of participants who see each other's tracks.
type Room struct {
	m    *Manager
	name string
	sid  string

	mu           sync.Mutex
	participants map[string]*Participant // by participant id
	identities   map[string]*Participant // by identity
	tracks       map[string]*Track       // published tracks, by track id
	moved        map[string]*Track       // tracks of a participant that moved, until they come back (handover.go)
	emptyTimer   *time.Timer
	closed       bool
	speakers     speakers // active speaker detection (speakers.go)

	// Cluster (cluster.go, remote.go); bus is nil on a single node.
	bus       Bus
	seq       uint64                  // this node's events of the room so far
	remotes   map[string]*Participant // other nodes' participants, by id
	remoteSeq map[string]uint64       // last event applied, by node
	nodeDeath map[string]uint64       // nodes gone silent: which death (deaths) their resume window follows (failover.go)
	deaths    uint64
	remoteSpk map[string][]protocol.Speaker // other nodes' active speakers
	localSpk  []protocol.Speaker            // this node's, as last sent
	mix       roomMix                       // the live audio mix (mix.go)
	want      remoteWant                    // remote media wanted without a subscriber (remotemedia.go)
	// synced is closed once the bus has fetched the other nodes' parts of
	// a room just opened here (cluster.go, Synced); nil on a single node.
	synced     chan struct{}
	syncedOnce sync.Once
}

func newRoom(m *Manager, name string) *Room {
	return &Room{
		m: m, name: name, sid: newID("RM_"),
		participants: map[string]*Participant{},
		identities:   map[string]*Participant{},
		tracks:       map[string]*Track{},
		remotes:      map[string]*Participant{},
		remoteSeq:    map[string]uint64{},
		remoteSpk:    map[string][]protocol.Speaker{},
		bus:          m.bus,
		// A later instance of the room on this node continues the
		// sequence numbers the other nodes have seen from an earlier one.
		seq: uint64(clock.Micros()),
	}
}

// Name is the room's name.
func (r *Room) Name() string { return r.name }

// SID is this instance's unique id (a room re-created later has a new one).
func (r *Room) SID() string { return r.sid }

// add admits p, replacing a participant with the same identity, and tells
// the others. It returns false if the room has already closed.
func (r *Room) add(p *Participant) (*protocol.JoinResult, bool) {
	r.mu.Lock()
	if r.closed || !r.fits(p) { // full: Join retries and admit reports it
		r.mu.Unlock()
		return nil, false
	}
	if r.emptyTimer != nil {
		r.emptyTimer.Stop()
		r.emptyTimer = nil
	}
	old := r.identities[p.identity]
	r.participants[p.id] = p
	r.identities[p.identity] = p
	others := make([]protocol.Participant, 0, len(r.participants)+len(r.remotes))
	for _, o := range r.participants {
		if o != p && o != old {
			others = append(others, o.Info())
			if !p.takenOver { // they knew it from its old node (takeover.go)
				o.peer.Notify(protocol.NotifyParticipantJoined, protocol.ParticipantParams{Participant: p.Info()})
			}
		}
	}
	for _, o := range r.remotes {
		others = append(others, o.Info())
	}
	r.emit(Event{Type: EvJoined, Participant: ptr(p.Info()), Identity: p.identity})
	r.mu.Unlock()
	switch {
	case old == nil:
	case old.id == p.id:
		// The same participant made again by a takeover whose join result
		// was lost (takeover.go, lostTakeover): the old one goes silently.
		old.close(protocol.ReasonDisconnected, false)
	default:
		old.close(protocol.ReasonDuplicate, true)
	}
	sort.Slice(others, func(i, j int) bool { return others[i].JoinedAt < others[j].JoinedAt })
	res := &protocol.JoinResult{
		Participant:  p.Info(),
		Room:         protocol.Room{Name: r.name, SID: r.sid},
		Participants: others,
		ICEServers:   r.m.clientICEServers(p.identity),
		ResumeToken:  p.resumeToken,
	}
	if res.ICEServers == nil {
		res.ICEServers = []webrtc.ICEServer{}
	}
	return res, true
}

// remove takes p out, tells the others, and starts the empty timer if it
// was the last one.
func (r *Room) remove(p *Participant, reason string) {
	r.mu.Lock()
	if r.participants[p.id] != p {
		r.mu.Unlock()
		return
	}
	delete(r.participants, p.id)
	if r.identities[p.identity] == p {
		delete(r.identities, p.identity)
	}
	moving := p.isMoving() // it goes on through another node (failover.go): nobody sees it leave
	if !moving {
		for _, o := range r.participants {
			if o.identity == p.identity { // its successor (duplicate) never knew it
				continue
			}
			o.peer.Notify(protocol.NotifyParticipantLeft, protocol.ParticipantLeftParams{ParticipantID: p.id, Reason: reason})
		}
	}
	// A clustered node shutting down hands its participants over: they
	// resume through another node (takeover.go), so the cluster is not told
	// they left and they keep their place in the room.
	handoff := moving || (reason == protocol.ReasonServerShutdown && r.bus != nil)
	if !handoff {
		r.emit(Event{Type: EvLeft, ParticipantID: p.id, Reason: reason})
		if r.bus != nil {
			r.bus.Leave(r.name, p.member())
		}
	}
	if len(r.participants) == 0 && !r.closed {
		r.emptyTimer = time.AfterFunc(r.m.cfg.EmptyTimeout, r.closeIfEmpty)
	}
	r.mu.Unlock()
	if !handoff {
		r.endMovedOf(p.id)        // it moved here and left before its tracks came back: they never will
		r.m.notifyLeft(p, reason) // see events.go
	}
}

func (r *Room) closeIfEmpty() {
	r.mu.Lock()
	if r.closed || len(r.participants) > 0 {
		r.mu.Unlock()
		return
	}
	if r.keepForRecordingLocked() {
		r.emptyTimer = time.AfterFunc(r.m.cfg.EmptyTimeout, r.closeIfEmpty)
		r.mu.Unlock()
		return
	}
	r.closed = true
	r.stopMixer()
	r.mu.Unlock()
	r.m.removeRoom(r)
}

// Close ends every participant's session with reason and closes the room.
func (r *Room) Close(reason string) {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return
	}
	r.closed = true
	r.stopMixer()
	if r.emptyTimer != nil {
		r.emptyTimer.Stop()
	}
	ps := slices.Collect(maps.Values(r.participants))
	r.mu.Unlock()
	for _, p := range ps {
		p.close(reason, true)
	}
	r.m.removeRoom(r)
}

// publish makes a track visible: others are told and auto-subscribers get it.
func (r *Room) publish(t *Track) {
	r.mu.Lock()
	if r.closed || (r.participants[t.owner.id] != t.owner && r.remotes[t.owner.id] != t.owner) {
		r.mu.Unlock()
		return
	}
	if old := r.successorLocked(t); old != nil {
		r.spliceTrackLocked(old, t) // handover.go
		return
	}
	r.tracks[t.id] = t
	if t.kind == webrtc.RTPCodecTypeAudio && t.owner.node == "" {
		r.startSpeakers()
		r.mixInput(t)
	}
	if r.wantsRemoteLocked(t) {
		t.awaitImport(nil) // a recording or the mix here wants it (remotemedia.go)
	}
	info := t.Info()
	if t.owner.node == "" {
		r.emit(Event{Type: EvPublished, Track: &info})
	}
	t.announced = info
	for _, o := range r.participants {
		if o == t.owner {
			continue
		}
		o.peer.Notify(protocol.NotifyTrackPublished, protocol.TrackParams{Track: info})
		if o.autoSubscribe || o.restore != nil {
			o.trackAppeared(t) // restore.go
		}
	}
	r.mu.Unlock()
	if t.carried { // announced by its old node; the node had no part of the room to splice it into
		r.m.notifyHandedOver(r, t)
		return
	}
	r.m.notifyPublished(r, t)
}

// unpublish removes a track from the room and from every subscriber.
func (r *Room) unpublish(t *Track) {
	r.mu.Lock()
	if r.tracks[t.id] != t {
		r.mu.Unlock()
		return
	}
	delete(r.tracks, t.id)
	if r.moved[t.id] == t {
		delete(r.moved, t.id)
	}
	if r.mix.mx != nil {
		r.mix.mx.RemoveInput(t.id) // the voice leaves the mix at the next frame
	}
	for _, o := range r.participants {
		if o.id == t.owner.id {
			continue
		}
		o.unsubscribeTrack(t.id)
		if o.identity == t.owner.identity {
			// The owner's successor, which replaced it (duplicate): it was
			// never told of the owner nor of its tracks.
			continue
		}
		o.peer.Notify(protocol.NotifyTrackUnpublished, protocol.TrackUnpublishedParams{TrackID: t.id, ParticipantID: t.owner.id})
	}
	if t.owner.node == "" {
		r.emit(Event{Type: EvUnpublished, TrackID: t.id, ParticipantID: t.owner.id})
	}
	r.mu.Unlock()
	r.m.notifyUnpublished(r, t)
}

// trackUpdated tells the others a track's metadata changed. An update
// that says what the room was last told is not sent: a layer going live
// or a second encoding arriving often changes nothing a client sees.
func (r *Room) trackUpdated(t *Track) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.tracks[t.id] != t {
		return
	}
	info := t.Info()
	if reflect.DeepEqual(info, t.announced) {
		return
	}
	t.announced = info
	for _, o := range r.participants {
		if o != t.owner {
			o.peer.Notify(protocol.NotifyTrackUpdated, protocol.TrackParams{Track: info})
		}
	}
	if t.owner.node == "" {
		r.emit(Event{Type: EvTrackUpdated, Track: &info})
	}
}

// layersChanged reacts to a simulcast layer starting or stopping, or its
// size changing: the room sees the new layer set and every subscriber
// reselects; a new size also re-applies the subscribers' maxWidth and
// maxHeight caps.
func (r *Room) layersChanged(t *Track) {
	resized := t.learnSizes()
	r.trackUpdated(t)
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, o := range r.participants {
		if o == t.owner {
			continue
		}
		if resized {
			o.loop.post(func() { o.loop.applyTrack(t) })
		} else {
			o.loop.post(func() { o.loop.reselectTrack(t) })
		}
	}
}

// track finds a published track by id.
func (r *Room) track(id string) *Track {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.tracks[id]
}

// publishedTracks lists the tracks p may subscribe to (everyone else's).
func (r *Room) publishedTracks(p *Participant) []*Track {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]*Track, 0, len(r.tracks))
	for _, t := range r.tracks {
		if t.owner != p && t.owner.id != p.id { // nor its own, moved here (handover.go)
			out = append(out, t)
		}
	}
	return out
}

// relayData sends a publisher's data message to every other participant.
func (r *Room) relayData(from *Participant, text []byte) {
	msg, err := json.Marshal(protocol.DataMessage{From: from.id, Payload: string(text)})
	if err != nil {
		return
	}
	r.mu.Lock()
	targets := make([]*Participant, 0, len(r.participants))
	for _, o := range r.participants {
		if o != from {
			targets = append(targets, o)
		}
	}
	r.emit(Event{Type: EvData, ParticipantID: from.id, Payload: string(text)})
	r.mu.Unlock()
	for _, o := range targets {
		o.sendData(msg)
	}
}

// Participants lists the participants' public views.
func (r *Room) Participants() []protocol.Participant { return r.infosExcept(nil) }

// infosExcept lists the public views of the participants, local and
// remote, but skip, in the order they joined. The views are taken after
// r.mu is released: Info takes each participant's own lock.
func (r *Room) infosExcept(skip *Participant) []protocol.Participant {
	r.mu.Lock()
	ps := make([]*Participant, 0, len(r.participants)+len(r.remotes))
	for _, p := range r.participants {
		if p != skip {
			ps = append(ps, p)
		}
	}
	for _, p := range r.remotes {
		ps = append(ps, p)
	}
	r.mu.Unlock()
	out := make([]protocol.Participant, 0, len(ps))
	for _, p := range ps {
		out = append(out, p.Info())
	}
	sort.Slice(out, func(i, j int) bool { return out[i].JoinedAt < out[j].JoinedAt })
	return out
}

func ptr[T any](v T) *T { return &v }
