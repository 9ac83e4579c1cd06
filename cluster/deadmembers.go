package cluster

import (
	"github.com/starling-rtc/starling/protocol"
	"github.com/starling-rtc/starling/room"
)

// Participants of a dead node leave without their node: it was killed, so
// it never sends their participant_left webhook (participant and track
// webhooks come from the node where they happen), nor carries out a kick
// or a duplicate join's "end it" command sent to it. Their member keys go
// from the room state in one of three ways, each done by exactly one live
// node (a deletion at the revision read: one wins):
//
//   - the purge after the resume window (purgeNode): "disconnected";
//   - a join of the same identity on another node, which deletes the old
//     member's key (join): "duplicate";
//   - a kick through the admin API (evictDead): "kicked".
//
// That node sends the webhook in the dead node's place
// (Options.OnMemberGone), so a backend that counts who is in a room by the
// webhooks does not keep them in it for good. For a kick or a duplicate it
// also tells every node with a part of the room to drop its stub of the
// participant at once, with that reason, as the dead node's own leave
// event would have (without it, each node's watch drops the stub a second
// later as "disconnected"); and with its member key gone the participant
// cannot resume through another node. Their tracks' track_unpublished is
// sent when the node is found dead, by one node that knew them
// (hookonce.go, deadTracks); each of these webhooks is claimed once.

// memberGone reports a member removed from the room state without its
// node, for the webhooks. The room may be closed already (its last
// members were the dead node's): the sid is then unknown.
func (n *Node) memberGone(name string, m room.Member, reason string) {
	if n.opts.OnMemberGone == nil {
		return
	}
	sid := ""
	if st, ok := n.get(name); ok {
		sid = st.SID
	}
	n.Once(OnceParticipantLeft, m.ID, func() { n.opts.OnMemberGone(name, sid, m, reason) }) // hookonce.go
}

// evictDead carries out a kick (ev) sent to a node that is dead: it
// deletes the member's key (unless replaced, a duplicate join, deleted it
// already), sends its participant_left, and has every node drop its stub.
func (n *Node) evictDead(node, name string, ev room.Event, replaced *room.Member) {
	reason := ev.Reason
	if reason == "" {
		reason = protocol.ReasonKicked
	}
	n.log.Info("the node of a participant ended is dead: ending it without its node", "room", name, "member", ev.ParticipantID, "node", node, "reason", reason)
	// The stubs first: before the watches see the key gone and drop them
	// as "disconnected" (a second later), and while the key's deletion
	// may wait for the store (the dead node may have led its stream).
	drop := room.Event{Type: room.CtlDropRemote, ParticipantID: ev.ParticipantID, Reason: reason}
	if r := n.rooms.Room(name); r != nil {
		r.ApplyControl(drop)
	}
	for _, other := range n.OtherNodes() {
		if other != node {
			n.Control(other, name, drop)
		}
	}
	gone, removed := replaced, false
	if gone == nil {
		e, _, ok := n.removeMemberEntry(name, memberKey(roomKey(name), node, ev.ParticipantID), ev.ParticipantID)
		gone, removed = &e.Member, ok
		if !ok {
			gone = nil // gone already: left, moved, or purged by another node
		}
	}
	if gone != nil {
		n.memberGone(name, *gone, reason)
	}
	if removed {
		n.maybeEmpty(name, nil, 0)
	}
}
