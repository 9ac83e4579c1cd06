package room

import "github.com/starling-rtc/starling/protocol"

// Permissions are what a participant may do, from its access token's grants.
type Permissions struct {
	CanPublish     bool // publish audio/video tracks
	CanSubscribe   bool // receive other participants' tracks
	CanPublishData bool // have its data messages relayed to the room
}

// AllPermissions is what a participant may do on an open server (no keys).
var AllPermissions = Permissions{CanPublish: true, CanSubscribe: true, CanPublishData: true}

// Permissions reports what the participant may do.
func (p *Participant) Permissions() Permissions {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.perms
}

// checkPublish refuses an offer that sends media without the publish grant,
// or more tracks than the limit (see limits.go).
func (p *Participant) checkPublish(mediaSections int) error {
	if mediaSections > 0 && !p.Permissions().CanPublish {
		return protocol.Errorf(protocol.CodeForbidden, "not allowed to publish: the token lacks canPublish")
	}
	return p.checkTracks(mediaSections)
}

// checkSubscribe refuses a subscription without the subscribe grant, or
// beyond the subscription limit (see limits.go).
func (p *Participant) checkSubscribe(ids []string) error {
	if !p.Permissions().CanSubscribe {
		return protocol.Errorf(protocol.CodeForbidden, "not allowed to subscribe: the token lacks canSubscribe")
	}
	return p.checkSubscriptions(ids)
}

// notYours is the error for a request on a track the participant does not
// publish: another participant's track in its room is forbidden (403),
// any other id is unknown (404), so ids from other rooms reveal nothing.
func (p *Participant) notYours(trackID string) error {
	if p.room.track(trackID) != nil {
		return protocol.Errorf(protocol.CodeForbidden, "not allowed: track %q is not one you publish", trackID)
	}
	return protocol.Errorf(protocol.CodeNotFound, "unknown track %q: not one you publish", trackID)
}
