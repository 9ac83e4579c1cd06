package room

import (
	"maps"
	"slices"
	"sync"

	"github.com/starling-rtc/starling/protocol"
	"github.com/starling-rtc/starling/sfu"
)

// PublishedTrack describes a published track to an Observer: where it is,
// who publishes it, and the media source to attach sinks to.
type PublishedTrack struct {
	Room            string
	RoomSID         string
	ParticipantID   string
	ParticipantName string
	Identity        string
	Track           protocol.Track
	Source          sfu.Source
	// Node is the node a remote track is published on ("" = this node);
	// only a RemoteObserver gets remote tracks (remotemedia.go).
	Node string
	// HandedOver: the track came back under its id on the node its
	// participant moved to (handover.go). The room saw no new track:
	// observers that follow media (recorders, the mix) take its new
	// source, a webhook sends no second track_published.
	HandedOver bool
}

// Observer learns about tracks appearing and disappearing in every room of a
// Manager (recorders, webhooks). Calls are made without room locks held, on
// the goroutine that changed the room: they must return quickly and must
// not block.
type Observer interface {
	TrackPublished(t PublishedTrack)
	TrackUnpublished(t PublishedTrack)
	RoomClosed(room, sid string)
}

// observers is a copy-on-write list of observers.
type observers struct {
	mu   sync.Mutex
	list []Observer
}

func (o *observers) snapshot() []Observer {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.list
}

// AddObserver registers o for every room; the returned func unregisters it.
func (m *Manager) AddObserver(o Observer) (remove func()) {
	m.obs.mu.Lock()
	m.obs.list = append(append([]Observer(nil), m.obs.list...), o)
	m.obs.mu.Unlock()
	return func() {
		m.obs.mu.Lock()
		defer m.obs.mu.Unlock()
		next := make([]Observer, 0, len(m.obs.list))
		for _, x := range m.obs.list {
			if x != o {
				next = append(next, x)
			}
		}
		m.obs.list = next
	}
}

// ObservedTracks lists the tracks published in the room now, in the form
// observers get them (to start recording a room that is already live):
// those published here and the remote ones imported here (Node set).
func (r *Room) ObservedTracks() []PublishedTrack {
	r.mu.Lock()
	tracks := slices.Collect(maps.Values(r.tracks))
	r.mu.Unlock()
	out := make([]PublishedTrack, 0, len(tracks))
	for _, t := range tracks {
		if pt, ok := r.describe(t); ok {
			out = append(out, pt)
		}
	}
	return out
}

func (r *Room) describe(t *Track) (PublishedTrack, bool) {
	t.mu.Lock()
	src := t.trackSourceLocked()
	t.mu.Unlock()
	if src == nil {
		return PublishedTrack{}, false
	}
	o := t.owner
	o.mu.Lock() // a rename (Update, remoteUpdated) writes it under o.mu
	name := o.name
	o.mu.Unlock()
	return PublishedTrack{
		Room: r.name, RoomSID: r.sid, ParticipantID: o.id, ParticipantName: name,
		Identity: t.owner.identity, Track: t.Info(), Source: src, Node: t.owner.node,
	}, true
}

// notifyPublished tells observers t is published; call without r.mu held.
func (m *Manager) notifyPublished(r *Room, t *Track) {
	m.notify(r, t, Observer.TrackPublished)
}

// notifyHandedOver tells observers t is published in the place of the
// same track of a participant that moved (HandedOver); call without r.mu
// held.
func (m *Manager) notifyHandedOver(r *Room, t *Track) {
	m.notifyMod(r, t, Observer.TrackPublished, func(pt *PublishedTrack) { pt.HandedOver = true })
}

// notifyUnpublished tells observers t is gone; call without r.mu held.
func (m *Manager) notifyUnpublished(r *Room, t *Track) {
	m.notify(r, t, Observer.TrackUnpublished)
}

// notify calls tell for every observer of t: a remote track (Node set)
// only for RemoteObservers.
func (m *Manager) notify(r *Room, t *Track, tell func(Observer, PublishedTrack)) {
	m.notifyMod(r, t, tell, nil)
}

// notifyMod is notify with mod applied to the description (if not nil).
func (m *Manager) notifyMod(r *Room, t *Track, tell func(Observer, PublishedTrack), mod func(*PublishedTrack)) {
	obs := m.obs.snapshot()
	if len(obs) == 0 {
		return
	}
	pt, ok := r.describe(t)
	if !ok {
		return
	}
	if mod != nil {
		mod(&pt)
	}
	for _, o := range obs {
		if _, remote := o.(RemoteObserver); pt.Node == "" || remote {
			tell(o, pt)
		}
	}
}

// notifyRoomClosed tells observers a room instance has closed.
func (m *Manager) notifyRoomClosed(r *Room) {
	for _, o := range m.obs.snapshot() {
		o.RoomClosed(r.name, r.sid)
	}
}
