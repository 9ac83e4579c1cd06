package cluster

import (
	"github.com/starling-rtc/starling/protocol"
	"github.com/starling-rtc/starling/room"
)

// Participants of a dead node leave without their node: it was killed, so
// it never sends their participant_left webhook (participant and track
// webhooks come from the node where they happen). Their member keys go
// from the room state in one of two ways, each done by exactly one live
// node (a deletion at the revision read: one wins): the purge after the
// resume window (purgeNode), or a join of the same identity elsewhere that
// replaces one (join). That node sends the webhook in the dead node's
// place (Options.OnMemberGone), so a backend that counts who is in a room
// by the webhooks does not keep them in it for good. (Their tracks'
// track_unpublished is not sent: the state does not list tracks.)

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
	n.opts.OnMemberGone(name, sid, m, reason)
}

// replacedOnDeadNode: a join here replaced m, a member on another node,
// whose node is told to end it ("duplicate") and sends its
// participant_left, unless that node is dead: a node whose bus connection
// closed does not answer its ping (no responders). It runs in the
// background, off the join's path.
func (n *Node) replacedOnDeadNode(name, sid string, m room.Member) {
	if n.opts.OnMemberGone == nil {
		return
	}
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		if !n.nodeAnswers(m.Node) {
			n.opts.OnMemberGone(name, sid, m, protocol.ReasonDuplicate)
		}
	}()
}
