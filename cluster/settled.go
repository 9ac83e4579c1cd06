package cluster

import (
	"encoding/json"

	"github.com/nats-io/nats.go"
	"github.com/starling-rtc/starling/protocol"
)

// A drain's last step (room/handover.go): the node a participant moved to
// tells the draining node it released it from once the participant's new
// connections are up, so the draining node stops serving its old ones
// (until then its old subscriber connection keeps it hearing the room).

// settledMsg names a participant whose new connections are up.
type settledMsg struct {
	Room string `json:"room"`
	ID   string `json:"id"`
}

// Settled implements room.Bus.
func (n *Node) Settled(node, name, participantID string) {
	data, _ := json.Marshal(settledMsg{Room: name, ID: participantID})
	_ = n.bus.nc.Publish(nodeSubject(node, "settled"), data)
}

// subscribeSettled hears that participants this node released are served
// elsewhere now.
func (n *Node) subscribeSettled() error {
	_, err := n.bus.nc.Subscribe(nodeSubject(n.id, "settled"), func(m *nats.Msg) {
		var s settledMsg
		if json.Unmarshal(m.Data, &s) == nil && n.rooms != nil {
			n.rooms.Settled(s.Room, s.ID)
		}
	})
	return err
}

// releasedHeader carries, in a handoff's "ok", the tracks a draining node
// released the participant with, so that the node it moves to keeps
// their ids even without a part of the room of its own yet (no stub to
// learn them from). A header: an older node reads only the "ok".
const releasedHeader = "Starling-Released-Tracks"

func releasedMsg(tracks []protocol.Track) *nats.Msg {
	msg := &nats.Msg{Data: []byte("ok")}
	if len(tracks) > 0 {
		if data, err := json.Marshal(tracks); err == nil {
			msg.Header = nats.Header{}
			msg.Header.Set(releasedHeader, string(data))
		}
	}
	return msg
}

func releasedTracks(msg *nats.Msg) []protocol.Track {
	var tracks []protocol.Track
	if v := msg.Header.Get(releasedHeader); v != "" {
		_ = json.Unmarshal([]byte(v), &tracks)
	}
	return tracks
}
