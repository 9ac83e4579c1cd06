package room

import (
	"encoding/json"
	"maps"
	"slices"
	"time"

	"github.com/pion/webrtc/v4"
	"github.com/starling-rtc/starling/protocol"
)

// This file applies other nodes' room events to the local room: each
// remote participant is a stub Participant (node set, no connections)
// whose tracks are Tracks without a receiver; their media comes through
// the bus's Import when a local participant subscribes.

// newRemoteParticipant makes the stub of another node's participant.
func (r *Room) newRemoteParticipant(node string, rp RemoteParticipant) *Participant {
	p := &Participant{
		m: r.m, room: r, node: node, peer: nopPeer{}, id: rp.Info.ID, identity: rp.Identity,
		name: rp.Info.Name, metadata: rp.Info.Metadata, joinedAt: time.UnixMilli(rp.Info.JoinedAt),
		tracks: map[string]*Track{}, byCID: map[string]*Track{}, perms: AllPermissions,
	}
	p.log = r.m.log.With("room", r.name, "participant", p.id, "node", node)
	return p
}

func newRemoteTrack(owner *Participant, info protocol.Track) *Track {
	t := &Track{id: info.ID, owner: owner, kind: webrtc.RTPCodecTypeAudio, info: info, visible: true}
	if info.Kind == "video" {
		t.kind = webrtc.RTPCodecTypeVideo
	}
	t.info.Layers = append([]protocol.Layer{}, info.Layers...)
	return t
}

// nopPeer is a remote participant's Peer: its own node talks to it.
type nopPeer struct{}

func (nopPeer) Notify(string, any) {}
func (nopPeer) End(string)         {}

// Remote reports the node of a remote participant ("" for a local one).
func (p *Participant) Remote() string { return p.node }

// ApplyRemote applies another node's event. It returns true when the event
// shows a gap in that node's sequence: the caller then asks that node for
// a snapshot (ApplySnapshot).
func (r *Room) ApplyRemote(ev Event) (resync bool) {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return false
	}
	last, known := r.remoteSeq[ev.Node]
	if known && ev.Seq <= last {
		r.mu.Unlock()
		// Covered by a snapshot applied first (each bus subscription has
		// its own goroutine: a snapshot's reply taken after the event can
		// overtake it). A snapshot says who is in the room, not what they
		// said: a data message is delivered all the same. Each event
		// arrives once, so nothing is delivered twice.
		if ev.Type == EvData {
			r.remoteData(ev)
		}
		return false
	}
	resync = (known && ev.Seq != last+1) || (!known && ev.Seq != 1)
	r.remoteSeq[ev.Node] = ev.Seq
	r.mu.Unlock()
	r.applyEvent(ev)
	return resync
}

func (r *Room) applyEvent(ev Event) {
	switch ev.Type {
	case EvJoined:
		if ev.Participant != nil {
			r.remoteJoined(ev.Node, RemoteParticipant{Info: *ev.Participant, Identity: ev.Identity})
		}
	case EvLeft:
		r.remoteLeft(ev.ParticipantID, ev.Reason)
	case EvUpdated:
		if ev.Participant != nil {
			r.remoteUpdated(*ev.Participant)
		}
	case EvPublished, EvTrackUpdated:
		if ev.Track != nil {
			r.remoteTrack(*ev.Track)
		}
	case EvUnpublished:
		if t := r.track(ev.TrackID); t != nil && t.owner.node == ev.Node {
			r.remoteUnpublished(ev.TrackID) // not one that moved on since (handover.go)
		}
	case EvData:
		r.remoteData(ev)
	case EvSpeakers:
		r.remoteSpeakers(ev.Node, ev.Speakers)
	case EvMixPref:
		r.remoteMixPref(ev) // remotemedia.go
	}
}

// remoteJoined adds a stub and tells the local participants, then
// publishes its tracks.
func (r *Room) remoteJoined(node string, rp RemoteParticipant) {
	r.mu.Lock()
	if old := r.remotes[rp.Info.ID]; old != nil && old.node != node {
		// Resumed through another node after its own died (takeover.go):
		// the same participant, so nobody is told it left or joined.
		r.mu.Unlock()
		_, _ = r.retireStub(old.id) // its tracks stay until they come back (handover.go)
		r.mu.Lock()
		if r.remotes[rp.Info.ID] == nil && r.participants[rp.Info.ID] == nil {
			p := r.newRemoteParticipant(node, rp)
			r.remotes[p.id] = p
		}
		r.mu.Unlock()
		for _, ti := range rp.Info.Tracks {
			r.remoteTrack(ti)
		}
		return
	}
	if r.remotes[rp.Info.ID] != nil || r.participants[rp.Info.ID] != nil {
		r.mu.Unlock()
		for _, ti := range rp.Info.Tracks {
			r.remoteTrack(ti)
		}
		return
	}
	p := r.newRemoteParticipant(node, rp)
	r.remotes[p.id] = p
	if r.emptyTimer != nil && len(r.participants) == 0 {
		// no local participants: nobody to tell, the timer still closes us
	}
	info := p.Info()
	for _, o := range r.participants {
		o.peer.Notify(protocol.NotifyParticipantJoined, protocol.ParticipantParams{Participant: info})
	}
	r.mu.Unlock()
	for _, ti := range rp.Info.Tracks {
		r.remoteTrack(ti)
	}
}

// dropReplaced removes the stubs of identity's session on another node that
// a join here (id) replaced: the cluster gave the identity to the join,
// and that session's node ends it ("duplicate"). Before the joiner is
// added, so that, as on one node, its join result does not list the
// session it replaced and it is not told that session left; the local
// participants are told now (the leave event from its node then finds no
// stub).
func (r *Room) dropReplaced(identity, id string) {
	r.mu.Lock()
	var gone []string
	for sid, p := range r.remotes {
		if p.identity == identity && sid != id {
			gone = append(gone, sid)
		}
	}
	r.mu.Unlock()
	for _, sid := range gone {
		r.remoteLeft(sid, protocol.ReasonDuplicate)
	}
}

// RemoveRemote removes a remote participant the cluster state no longer lists.
func (r *Room) RemoveRemote(id, reason string) { r.remoteLeft(id, reason) }

// remoteLeft removes a stub, its tracks first.
func (r *Room) remoteLeft(id, reason string) {
	r.mu.Lock()
	p := r.remotes[id]
	if p == nil {
		r.mu.Unlock()
		return
	}
	p.mu.Lock()
	tracks := slices.Collect(maps.Values(p.tracks))
	p.closed = true
	p.mu.Unlock()
	r.mu.Unlock()
	for _, t := range tracks {
		r.unpublish(t)
		t.closeImport()
	}
	r.endMovedOf(id) // it moved and left before its tracks came back: they never will
	r.mu.Lock()
	delete(r.remotes, id)
	for node, l := range r.remoteSpk { // a speaker who left stops being one at once
		kept := make([]protocol.Speaker, 0, len(l))
		for _, s := range l {
			if s.ParticipantID != id {
				kept = append(kept, s)
			}
		}
		r.remoteSpk[node] = kept
	}
	r.syncRemoteSpeakersLocked()
	r.forgetMixPrefLocked(id)
	for _, o := range r.participants {
		o.peer.Notify(protocol.NotifyParticipantLeft, protocol.ParticipantLeftParams{ParticipantID: id, Reason: reason})
	}
	r.mu.Unlock()
}

func (r *Room) remoteUpdated(info protocol.Participant) {
	r.mu.Lock()
	defer r.mu.Unlock()
	p := r.remotes[info.ID]
	if p == nil {
		return
	}
	p.mu.Lock()
	p.name, p.metadata = info.Name, info.Metadata
	p.mu.Unlock()
	full := p.Info()
	for _, o := range r.participants {
		o.peer.Notify(protocol.NotifyParticipantUpdated, protocol.ParticipantParams{Participant: full})
	}
}

// remoteTrack publishes a remote track, or updates one already known.
func (r *Room) remoteTrack(info protocol.Track) {
	r.mu.Lock()
	p := r.remotes[info.ParticipantID]
	if p == nil {
		r.mu.Unlock()
		return
	}
	p.mu.Lock()
	t := p.tracks[info.ID]
	if t == nil {
		t = newRemoteTrack(p, info)
		p.tracks[t.id] = t
		p.mu.Unlock()
		r.mu.Unlock()
		r.publish(t)
		return
	}
	p.mu.Unlock()
	r.mu.Unlock()
	t.mu.Lock()
	changedMute := t.info.Muted != info.Muted
	resized := sizesDiffer(t.info.Layers, info.Layers)
	t.info = info
	t.info.Layers = append([]protocol.Layer{}, info.Layers...)
	t.mu.Unlock()
	r.trackUpdated(t)
	if changedMute {
		r.muteChanged(t)
	}
	if resized { // sizes learned from keyframes at the publisher's node: caps computed again
		r.mu.Lock()
		for _, o := range r.participants {
			o.loop.post(func() { o.loop.applyTrack(t) })
		}
		r.mu.Unlock()
	}
}

func (r *Room) remoteUnpublished(id string) {
	t := r.track(id)
	if t == nil || t.owner.node == "" {
		return
	}
	t.owner.mu.Lock()
	delete(t.owner.tracks, id)
	t.owner.mu.Unlock()
	r.unpublish(t)
	t.closeImport()
}

// remoteData delivers another node's data message to the local targets.
func (r *Room) remoteData(ev Event) {
	msg, err := json.Marshal(protocol.DataMessage{From: ev.ParticipantID, Payload: ev.Payload})
	if err != nil {
		return
	}
	r.mu.Lock()
	var targets []*Participant
	if len(ev.To) == 0 {
		for _, o := range r.participants {
			targets = append(targets, o)
		}
	} else {
		for _, id := range ev.To {
			if o := r.participants[id]; o != nil {
				targets = append(targets, o)
			}
		}
	}
	r.mu.Unlock()
	for _, o := range targets {
		o.sendData(msg)
	}
}

// Snapshot is this node's part of the room for a node that resyncs.
func (r *Room) Snapshot() NodeSnapshot {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := NodeSnapshot{Seq: r.seq, Participants: make([]RemoteParticipant, 0, len(r.participants))}
	if r.bus != nil {
		s.Node = r.bus.NodeID()
	}
	for _, p := range r.participants {
		s.Participants = append(s.Participants, RemoteParticipant{Info: p.Info(), Identity: p.identity})
	}
	s.Speakers = append([]protocol.Speaker(nil), r.localSpk...)
	for _, id := range r.m.tk.releasedIn(r.name) {
		if r.participants[id] == nil { // not resumed back here since
			s.Moved = append(s.Moved, id)
		}
	}
	return s
}

// ApplySnapshot replaces what the room knows of one node's participants.
// A snapshot older than the events already applied is ignored.
func (r *Room) ApplySnapshot(s NodeSnapshot) {
	r.mu.Lock()
	if last, ok := r.remoteSeq[s.Node]; r.closed || (ok && s.Seq < last) {
		r.mu.Unlock()
		return
	}
	r.remoteSeq[s.Node] = s.Seq
	keep := map[string]bool{}
	for _, rp := range s.Participants {
		keep[rp.Info.ID] = true
	}
	moved := map[string]bool{}
	for _, id := range s.Moved {
		moved[id] = true
	}
	var gone []string
	var moving []*Participant
	for id, p := range r.remotes {
		switch {
		case p.node != s.Node || keep[id]:
		case moved[id]:
			moving = append(moving, p)
		default:
			gone = append(gone, id)
		}
	}
	r.mu.Unlock()
	for _, id := range gone {
		r.m.log.Debug("remote participant gone from its node's snapshot", "room", r.name, "participant", id, "node", s.Node)
		r.remoteLeft(id, protocol.ReasonDisconnected)
	}
	for _, p := range moving {
		r.awaitMove(p)
	}
	for _, rp := range s.Participants {
		r.remoteJoined(s.Node, rp)
		r.pruneRemoteTracks(rp)
	}
	r.mu.Lock()
	_, had := r.remoteSpk[s.Node]
	r.mu.Unlock()
	if len(s.Speakers) > 0 || had {
		r.remoteSpeakers(s.Node, s.Speakers)
	}
}

// awaitMove keeps the stub of a participant its node released to another
// node it resumes through: that node's takeover here, or its join event,
// retires the stub without a word (retireStub). One still here with its
// old node when the resume window is over never arrived anywhere: it left.
func (r *Room) awaitMove(p *Participant) {
	p.log.Debug("remote participant released by its node: kept until its new node has it")
	window := r.m.cfg.ResumeWindow
	if window <= 0 {
		window = 30 * time.Second
	}
	time.AfterFunc(window, func() {
		r.mu.Lock()
		still := r.remotes[p.id] == p
		r.mu.Unlock()
		if still {
			r.remoteLeft(p.id, protocol.ReasonDisconnected)
		}
	})
}

// pruneRemoteTracks unpublishes a remote participant's tracks missing
// from its snapshot.
func (r *Room) pruneRemoteTracks(rp RemoteParticipant) {
	r.mu.Lock()
	p := r.remotes[rp.Info.ID]
	r.mu.Unlock()
	if p == nil {
		return
	}
	have := map[string]bool{}
	for _, t := range rp.Info.Tracks {
		have[t.ID] = true
	}
	p.mu.Lock()
	var gone []string
	for id := range p.tracks {
		if !have[id] {
			gone = append(gone, id)
		}
	}
	p.mu.Unlock()
	for _, id := range gone {
		r.remoteUnpublished(id)
	}
}

// RemoteMembers returns the remote participants known here, id → node.
func (r *Room) RemoteMembers() map[string]string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[string]string, len(r.remotes))
	for id, p := range r.remotes {
		out[id] = p.node
	}
	return out
}

// ForgetNode removes every participant of a node that is gone.
func (r *Room) ForgetNode(node string) {
	r.mu.Lock()
	var gone []string
	for id, p := range r.remotes {
		if p.node == node {
			gone = append(gone, id)
		}
	}
	delete(r.remoteSeq, node)
	r.mu.Unlock()
	for _, id := range gone {
		r.remoteLeft(id, protocol.ReasonDisconnected)
	}
}

// RemoteNodeGone removes a dead or departed node's participants from every room.
func (m *Manager) RemoteNodeGone(node string) {
	m.mu.Lock()
	rooms := slices.Collect(maps.Values(m.rooms))
	m.mu.Unlock()
	for _, r := range rooms {
		r.nodeDied(node, m.cfg.ResumeWindow) // failover.go
	}
}

// ApplyControl runs another node's command on a local participant.
func (r *Room) ApplyControl(ev Event) {
	switch ev.Type {
	case CtlCloseRoom:
		r.Close(ev.Reason)
		return
	case CtlData:
		ev.ParticipantID = "" // from the server (the admin API)
		r.remoteData(ev)
		return
	case CtlDropRemote:
		r.remoteLeft(ev.ParticipantID, ev.Reason)
		return
	}
	p := r.Participant(ev.ParticipantID)
	if p == nil || p.node != "" {
		return
	}
	switch ev.Type {
	case CtlKick:
		reason := ev.Reason
		if reason == "" {
			reason = protocol.ReasonKicked
		}
		p.close(reason, true)
	case CtlMute:
		_ = p.ServerMute(ev.TrackID, ev.Muted)
	case CtlUpdate:
		_ = p.Update(ev.Name, ev.Metadata) // a local participant: nothing to refuse
	}
}

// NodeTracks lists, in every room, the tracks this node knows of that
// node's participants (their stubs' tracks), as observers get them but
// without a source: the cluster reports a dead node's tracks as
// unpublished in its place (cluster/hookonce.go). Call it before
// RemoteNodeGone, which ends them.
func (m *Manager) NodeTracks(node string) []PublishedTrack {
	m.mu.Lock()
	rooms := slices.Collect(maps.Values(m.rooms))
	m.mu.Unlock()
	var out []PublishedTrack
	for _, r := range rooms {
		r.mu.Lock()
		for _, p := range r.remotes {
			if p.node != node {
				continue
			}
			p.mu.Lock()
			for _, t := range p.tracks {
				out = append(out, PublishedTrack{Room: r.name, RoomSID: r.sid, ParticipantID: p.id, ParticipantName: p.name,
					Identity: p.identity, Track: t.Info(), Node: node})
			}
			p.mu.Unlock()
		}
		r.mu.Unlock()
	}
	return out
}
