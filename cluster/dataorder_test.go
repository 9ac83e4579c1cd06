package cluster_test

import (
	"testing"
	"time"

	"github.com/starling-rtc/starling/client"
	"github.com/starling-rtc/starling/protocol"
	"github.com/starling-rtc/starling/room"
)

// A data message reaches a participant on another node even when a
// snapshot of its sender's node overtakes it there. Each bus subscription
// has its own goroutine, so a snapshot's reply taken after the message
// was sent (a resync, a node heard again after a stall) may be applied
// before the room event that carries the message; the snapshot covers the
// event's sequence number, and the event was dropped as already applied.
// A snapshot says who is in the room, not what they said. Here n1 holds
// its room events back from the data message on, asks n0 for a snapshot,
// then lets them go. Before, b never got the message (TestRoomSpansNodes
// once: "1 of 2 remote participants got the data message", under load).
func TestDataMessageOvertakenBySnapshot(t *testing.T) {
	parallel(t)
	srvs := startCluster(t, 2, nil)
	a := join(t, srvs[0], "overtaken", "a")
	b := join(t, srvs[1], "overtaken", "b")
	seeEachOther(t, a, b)
	got := make(chan protocol.DataMessage, 4)
	b.OnData(func(m protocol.DataMessage) { got <- m })

	held, release := make(chan struct{}), make(chan struct{})
	n1 := srvs[1].Cluster()
	n1.OnRoomEvent(func(name string, ev room.Event) {
		if name == "overtaken" && ev.Type == room.EvData {
			close(held)
			<-release
		}
	})
	t.Cleanup(func() { n1.OnRoomEvent(nil) })
	if err := a.SendData(ctxT(t, 10*time.Second), "overtaken"); err != nil {
		t.Fatal(err)
	}
	select {
	case <-held:
	case <-time.After(20 * time.Second):
		t.Fatal("the data message's room event never reached n1")
	}
	n1.AskSnapshot("overtaken", "n0") // taken after the message: covers its event
	close(release)
	waitData(t, got, a, "overtaken", "b, its event overtaken by a snapshot")
}

// waitData waits for the data message payload from c on got.
func waitData(t *testing.T, got <-chan protocol.DataMessage, c *client.Client, payload, who string) {
	t.Helper()
	timeout := time.After(15 * time.Second)
	for {
		select {
		case m := <-got:
			if m.From == c.ParticipantID() && m.Payload == payload {
				return
			}
		case <-timeout:
			t.Fatalf("%s never got the data message", who)
		}
	}
}
