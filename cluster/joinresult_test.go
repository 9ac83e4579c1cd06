package cluster_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// TestJoinResultListsOtherNodes: PROTOCOL.md's join result lists "the
// others already in the room", and clustering changes nothing for
// clients. A join through a node that has no part of the room yet must
// list the participants already on the other nodes, and the joiner must
// not be told afterwards, by participantJoined, that they joined. Raw
// frames: the joiner is what any outside client sees on the wire.
func TestJoinResultListsOtherNodes(t *testing.T) {
	parallel(t)
	srvs := startCluster(t, 3, nil)
	first := join(t, srvs[1], "roster", "first")
	second := join(t, srvs[0], "roster", "second")
	seeEachOther(t, first, second)
	want := map[string]bool{first.ParticipantID(): true, second.ParticipantID(): true}

	ws, _, err := (&websocket.Dialer{HandshakeTimeout: 10 * time.Second}).Dial(srvs[2].SignalingURL(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	if err := ws.WriteMessage(websocket.TextMessage, []byte(`{"jsonrpc":"2.0","id":1,"method":"join","params":{"room":"roster","name":"third"}}`)); err != nil {
		t.Fatal(err)
	}
	_ = ws.SetReadDeadline(time.Now().Add(20 * time.Second))
	var res struct {
		Result struct {
			Participants []map[string]any `json:"participants"`
		} `json:"result"`
		Error any `json:"error"`
	}
	_, data, err := ws.ReadMessage()
	if err != nil || json.Unmarshal(data, &res) != nil || res.Error != nil {
		t.Fatalf("join through the third node: %v %s", err, data)
	}
	listed := map[string]bool{}
	for _, p := range res.Result.Participants {
		id, _ := p["id"].(string)
		listed[id] = true
	}
	for id := range want {
		if !listed[id] {
			t.Errorf("the join result through a node new to the room lists %v, not %s, which was in the room before: %s", listed, id, data)
		}
	}
	// What follows within a second (the other nodes' news arrives in
	// milliseconds) must not announce them as newcomers.
	_ = ws.SetReadDeadline(time.Now().Add(time.Second))
	for {
		_, data, err := ws.ReadMessage()
		if err != nil {
			break
		}
		var n struct {
			Method string `json:"method"`
			Params struct {
				Participant map[string]any `json:"participant"`
			} `json:"params"`
		}
		if json.Unmarshal(data, &n) == nil && n.Method == "participantJoined" {
			if id, _ := n.Params.Participant["id"].(string); want[id] {
				t.Errorf("participantJoined for %s, which was in the room before the join", id)
			}
		}
	}
}
