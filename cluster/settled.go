package cluster

import (
	"encoding/json"

	"github.com/nats-io/nats.go"
	"github.com/starling-rtc/starling/room"
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

// withdrawnHeader carries, in a handoff's "ok", the client track ids the
// participant unpublished by request while its SDP still sends them: the
// node it moves to keeps them unpublished when its client's offer there
// sends them again (room/withdrawn.go). Without it they came back there.
const withdrawnHeader = "Starling-Withdrawn-Tracks"

func releasedMsg(h room.HandedOver) *nats.Msg {
	msg := &nats.Msg{Data: []byte("ok")}
	set := func(key string, v any) {
		data, err := json.Marshal(v)
		if err != nil {
			return
		}
		if msg.Header == nil {
			msg.Header = nats.Header{}
		}
		msg.Header.Set(key, string(data))
	}
	if len(h.Tracks) > 0 {
		set(releasedHeader, h.Tracks)
	}
	if len(h.Withdrawn) > 0 {
		set(withdrawnHeader, h.Withdrawn)
	}
	return msg
}

func handedOver(msg *nats.Msg) room.HandedOver {
	var h room.HandedOver
	if v := msg.Header.Get(releasedHeader); v != "" {
		_ = json.Unmarshal([]byte(v), &h.Tracks)
	}
	if v := msg.Header.Get(withdrawnHeader); v != "" {
		_ = json.Unmarshal([]byte(v), &h.Withdrawn)
	}
	return h
}
