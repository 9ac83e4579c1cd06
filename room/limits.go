package room

import (
	"github.com/starling-rtc/starling/protocol"
)

// Limits bound what rooms and participants may use; 0 means unlimited
// (MaxDataMessage: protocol.MaxDataMessage).
type Limits struct {
	MaxRooms         int // rooms open at once on the node
	MaxParticipants  int // participants in one room
	MaxTracks        int // tracks one participant publishes
	MaxSubscriptions int // tracks one participant receives
	MaxDataMessage   int // bytes of one data message
}

// roomsFull reports, with m.mu held, whether a new room would exceed MaxRooms.
func (m *Manager) roomsFull() error {
	if max := m.cfg.Limits.MaxRooms; max > 0 && len(m.rooms) >= max {
		return protocol.Errorf(protocol.CodeTooLarge, "server is full: %d rooms are open, the limit is %d", len(m.rooms), max)
	}
	return nil
}

// admit checks that one more participant with identity fits in the room (a
// participant replacing its own identity always fits).
func (r *Room) admit(identity string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.admitLocked(identity)
}

func (r *Room) admitLocked(identity string) error {
	max := r.m.cfg.Limits.MaxParticipants
	if max <= 0 || len(r.participants) < max {
		return nil
	}
	if identity != "" && r.identities[identity] != nil {
		return nil
	}
	return protocol.Errorf(protocol.CodeTooLarge, "room %q is full: %d participants", r.name, max)
}

// fits reports, with r.mu held, whether p may be added (see add).
func (r *Room) fits(p *Participant) bool { return r.admitLocked(p.identity) == nil }

func (m *Manager) maxDataMessage() int {
	if n := m.cfg.Limits.MaxDataMessage; n > 0 {
		return n
	}
	return protocol.MaxDataMessage
}

// checkTracks refuses an offer publishing more tracks than MaxTracks.
func (p *Participant) checkTracks(n int) error {
	if max := p.m.cfg.Limits.MaxTracks; max > 0 && n > max {
		return protocol.Errorf(protocol.CodeTooLarge, "too many tracks: the offer sends %d, the limit is %d per participant", n, max)
	}
	return nil
}

// checkSubscriptions refuses subscribing to more than MaxSubscriptions tracks.
func (p *Participant) checkSubscriptions(ids []string) error {
	max := p.m.cfg.Limits.MaxSubscriptions
	if max <= 0 {
		return nil
	}
	l := &p.loop
	l.subsMu.Lock()
	n := len(l.subsSeen)
	for _, id := range ids {
		if !l.subsSeen[id] {
			n++
		}
	}
	l.subsMu.Unlock()
	if n > max {
		return protocol.Errorf(protocol.CodeTooLarge, "too many subscriptions: %d, the limit is %d per participant", n, max)
	}
	return nil
}

// subscriptionsFull reports, on the loop, whether another down track would
// exceed MaxSubscriptions (auto-subscribe then skips the track).
func (l *subscriberLoop) subscriptionsFull(t *Track) bool {
	max := l.p.m.cfg.Limits.MaxSubscriptions
	if max <= 0 || len(l.down) < max {
		return false
	}
	l.p.log.Info("subscription limit reached: track not forwarded", "track", t.id, "limit", max)
	return true
}

// SetLimits replaces the limits of Config.Limits; call it before the first Join.
func (m *Manager) SetLimits(l Limits) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.cfg.Limits = l
}
