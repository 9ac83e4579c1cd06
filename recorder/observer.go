package recorder

import "github.com/starling-rtc/starling/room"

// observer adapts the Manager to room.Observer. It is a
// room.RemoteObserver: a room recording records the tracks published on
// other nodes of a cluster too.
type observer struct{ m *Manager }

func (observer) ObservesRemoteTracks() {}

func (o observer) TrackPublished(t room.PublishedTrack) {
	m := o.m
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return
	}
	var targets []*RoomRecorder
	roomRecording := m.noAuto[t.RoomSID]
	for _, r := range m.active {
		if r.rr.Room() == t.Room && (r.rr.RoomSID() == "" || r.rr.RoomSID() == t.RoomSID) {
			if r.rr.opts.TrackID == "" {
				roomRecording = true
				if t.Node == "" || r.whole() { // another node's track: see start
					targets = append(targets, r.rr)
				}
			}
		}
	}
	m.mu.Unlock()
	for _, rr := range targets {
		_ = rr.AddTrack(t)
	}
	if !roomRecording && t.Node == "" && m.autoMatch(t.Room) {
		// Off the room's goroutine (start does file I/O and, in a
		// cluster, claims the room); start() adds every track published
		// so far, this one included.
		m.autoStart(t.Room, t.RoomSID)
	}
}

func (o observer) TrackUnpublished(t room.PublishedTrack) {
	m := o.m
	m.mu.Lock()
	var targets []*RoomRecorder
	for _, r := range m.active {
		if r.rr.Room() == t.Room {
			targets = append(targets, r.rr)
		}
	}
	m.mu.Unlock()
	for _, rr := range targets {
		rr.RemoveTrack(t.Track.ID)
	}
}

func (o observer) RoomClosed(roomName, sid string) {
	m := o.m
	m.mu.Lock()
	delete(m.noAuto, sid)
	var targets []*recording
	for _, r := range m.active {
		if r.rr.Room() == roomName && (r.rr.RoomSID() == "" || r.rr.RoomSID() == sid) {
			targets = append(targets, r)
		}
	}
	m.mu.Unlock()
	for _, r := range targets {
		go func() {
			r.rr.Stop()
			m.reap(r)
		}()
	}
}
