package room

import (
	"encoding/json"
	"unicode/utf8"

	"github.com/starling-rtc/starling/protocol"
)

// This file is what the admin API (package admin) does to rooms.

// Participant returns a participant of the room by id, or nil.
func (r *Room) Participant(id string) *Participant {
	r.mu.Lock()
	defer r.mu.Unlock()
	if p := r.participants[id]; p != nil {
		return p
	}
	return r.remotes[id] // kick, mute and update reach its node (remote.go)
}

// Counts returns the numbers of participants and published tracks.
func (r *Room) Counts() (participants, tracks int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.participants) + len(r.remotes), len(r.tracks)
}

// Kick removes the participant: it gets `leave` with reason "kicked", the
// others `participantLeft`, and its tracks are unpublished.
func (p *Participant) Kick() {
	if p.node != "" {
		p.room.bus.Control(p.node, p.room.name, Event{Type: CtlKick, ParticipantID: p.id, Reason: protocol.ReasonKicked})
		return
	}
	p.close(protocol.ReasonKicked, true)
}

// ServerMute mutes or unmutes one of the participant's published tracks on
// the server's initiative: forwarding stops (or resumes) and everyone, the
// publisher included, gets `trackUpdated`.
func (p *Participant) ServerMute(trackID string, muted bool) error {
	p.mu.Lock()
	t := p.tracks[trackID]
	p.mu.Unlock()
	if t == nil {
		return protocol.Errorf(protocol.CodeNotFound, "participant %s publishes no track %q", p.id, trackID)
	}
	if p.node != "" {
		// Its node must take it: a dead node's participant waits to resume
		// elsewhere, with new tracks (409 says so; it answered 200 and
		// changed nothing).
		return p.room.bus.Command(p.node, p.room.name, Event{Type: CtlMute, ParticipantID: p.id, TrackID: trackID, Muted: muted})
	}
	if err := p.Mute(trackID, muted); err != nil {
		return err
	}
	p.peer.Notify(protocol.NotifyTrackUpdated, protocol.TrackParams{Track: t.Info()})
	return nil
}

// muted reports the track's muted flag.
func (t *Track) muted() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.info.Muted
}

// muteChanged re-applies every subscriber's settings of t, so a muted track
// is not forwarded and an unmuted one resumes at a keyframe.
func (r *Room) muteChanged(t *Track) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.mix.mx != nil {
		r.mix.mx.SetInputMuted(t.id, t.muted())
	}
	for _, o := range r.participants {
		if o == t.owner {
			continue
		}
		l := &o.loop
		l.post(func() {
			if d, ok := l.down[t.id]; ok {
				l.apply(t, d)
			}
		})
	}
}

// Update changes the participant's name and/or metadata (nil = unchanged)
// and sends `participantUpdated` to everyone in the room, itself included.
// Another node's participant is changed by its node, which must take the
// command (an error otherwise: Bus.Command).
func (p *Participant) Update(name, metadata *string) error {
	if p.node != "" {
		return p.room.bus.Command(p.node, p.room.name, Event{Type: CtlUpdate, ParticipantID: p.id, Name: name, Metadata: metadata})
	}
	p.mu.Lock()
	if name != nil {
		p.name = *name
	}
	if metadata != nil {
		p.metadata = *metadata
	}
	p.mu.Unlock()
	p.storeMember() // a takeover elsewhere (a drain, its node's death) keeps them
	info := p.Info()
	r := p.room
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.participants[p.id] != p {
		return nil
	}
	for _, o := range r.participants {
		o.peer.Notify(protocol.NotifyParticipantUpdated, protocol.ParticipantParams{Participant: info})
	}
	r.emit(Event{Type: EvUpdated, Participant: &info})
	return nil
}

// SendData sends a text message to the participants listed in to (all when
// empty) on their subscriber data channels, as {"from": "", "payload": text}:
// an empty from means the server. Unknown ids are a 404, nothing is sent.
func (r *Room) SendData(text string, to []string) error {
	if !utf8.ValidString(text) {
		return protocol.Errorf(protocol.CodeInvalidParams, "invalid params: payload must be UTF-8 text")
	}
	msg, err := json.Marshal(protocol.DataMessage{From: "", Payload: text})
	if err != nil {
		return protocol.Errorf(protocol.CodeInternal, "internal error")
	}
	r.mu.Lock()
	var targets []*Participant
	var remoteTo []string
	if len(to) == 0 {
		for _, p := range r.participants {
			targets = append(targets, p)
		}
	}
	for _, id := range to {
		p := r.participants[id]
		if p == nil && r.remotes[id] != nil {
			remoteTo = append(remoteTo, id)
			continue
		}
		if p == nil {
			r.mu.Unlock()
			return protocol.Errorf(protocol.CodeNotFound, "no participant %q in room %q", id, r.name)
		}
		targets = append(targets, p)
	}
	if len(to) == 0 || len(remoteTo) > 0 {
		r.emit(Event{Type: EvData, Payload: text, To: remoteTo})
	}
	r.mu.Unlock()
	for _, p := range targets {
		p.sendData(msg)
	}
	return nil
}
