package room

import (
	"maps"
	"slices"

	"github.com/starling-rtc/starling/sfu"
)

// Snapshot is a point-in-time count of a Manager's rooms, for metrics.
type Snapshot struct {
	Rooms        int
	Participants int
	Tracks       int             // published tracks (media arriving)
	Receivers    []*sfu.Receiver // one per published track; their sinks are the subscriptions
}

// Snapshot counts rooms, participants and published tracks. It takes each
// room's lock briefly and never blocks on a participant.
func (m *Manager) Snapshot() Snapshot {
	m.mu.Lock()
	rooms := slices.Collect(maps.Values(m.rooms))
	m.mu.Unlock()
	s := Snapshot{Rooms: len(rooms)}
	var tracks []*Track
	for _, r := range rooms {
		r.mu.Lock()
		s.Participants += len(r.participants)
		for _, t := range r.tracks {
			tracks = append(tracks, t)
		}
		r.mu.Unlock()
	}
	for _, t := range tracks {
		t.mu.Lock()
		if rc := t.receiver; rc != nil {
			s.Receivers = append(s.Receivers, rc)
		}
		t.mu.Unlock()
	}
	s.Tracks = len(s.Receivers)
	return s
}
