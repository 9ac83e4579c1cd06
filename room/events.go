package room

import (
	"github.com/pion/webrtc/v4"
)

// ParticipantEvent describes a participant to a LifecycleObserver.
type ParticipantEvent struct {
	Room, RoomSID string
	ParticipantID string
	Identity      string
	Name          string
}

// LifecycleObserver is an optional extension of Observer (register it with
// AddObserver): rooms starting and participants joining and leaving. Like
// Observer's, its methods must return quickly and never block or call back
// into the Manager: RoomStarted runs with the Manager's lock held.
type LifecycleObserver interface {
	RoomStarted(room, sid string)
	ParticipantJoined(p ParticipantEvent)
	ParticipantLeft(p ParticipantEvent, reason string)
}

func (p *Participant) event() ParticipantEvent {
	p.mu.Lock()
	name := p.name
	p.mu.Unlock()
	return ParticipantEvent{Room: p.room.name, RoomSID: p.room.sid, ParticipantID: p.id, Identity: p.identity, Name: name}
}

func (m *Manager) lifecycleObservers() []LifecycleObserver {
	var out []LifecycleObserver
	for _, o := range m.obs.snapshot() {
		if l, ok := o.(LifecycleObserver); ok {
			out = append(out, l)
		}
	}
	return out
}

// notifyRoomStarted: a room instance was created (m.mu held).
func (m *Manager) notifyRoomStarted(r *Room) {
	for _, o := range m.lifecycleObservers() {
		o.RoomStarted(r.name, r.sid)
	}
}

// notifyJoined: p was admitted to its room.
func (m *Manager) notifyJoined(p *Participant) {
	obs := m.lifecycleObservers()
	if len(obs) == 0 {
		return
	}
	e := p.event()
	for _, o := range obs {
		o.ParticipantJoined(e)
	}
}

// notifyLeft: p left its room for reason.
func (m *Manager) notifyLeft(p *Participant, reason string) {
	obs := m.lifecycleObservers()
	if len(obs) == 0 {
		return
	}
	e := p.event()
	for _, o := range obs {
		o.ParticipantLeft(e, reason)
	}
}

// SetICEServerFunc makes every join result's iceServers come from f (given
// the participant identity), e.g. to add TURN credentials made for that
// participant; nil goes back to Config.ICEServers. Call it before the first Join.
func (m *Manager) SetICEServerFunc(f func(identity string) []webrtc.ICEServer) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.iceFunc = f
}

// clientICEServers are the ICE servers handed to a joining client.
func (m *Manager) clientICEServers(identity string) []webrtc.ICEServer {
	m.mu.Lock()
	f := m.iceFunc
	m.mu.Unlock()
	if f == nil {
		return m.cfg.ICEServers
	}
	return f(identity)
}
