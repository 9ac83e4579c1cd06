package client_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/starling-rtc/starling/client"
	"github.com/starling-rtc/starling/protocol"
)

// TestDialRetriesUnavailableJoin: a join answered 503 ("try again
// shortly": a cluster node whose room state store elects a leader, or is
// slow on a loaded machine) is tried again until Dial's context ends; the
// client joins once the node answers. Before, Dial failed at the first
// 503 when it knew one node (cluster tests failed so at load 47).
func TestDialRetriesUnavailableJoin(t *testing.T) {
	t.Parallel()
	var joins atomic.Int32
	up := websocket.Upgrader{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer ws.Close()
		for {
			var m protocol.Message
			if ws.ReadJSON(&m) != nil {
				return
			}
			if m.Method != protocol.MethodJoin {
				continue
			}
			reply := map[string]any{"jsonrpc": "2.0", "id": m.ID}
			if joins.Add(1) <= 2 {
				reply["error"] = protocol.Error{Code: protocol.CodeUnavailable, Message: "cluster room state is unavailable; try again"}
			} else {
				reply["result"] = protocol.JoinResult{Participant: protocol.Participant{ID: "PA_retried", Name: "a"},
					Room: protocol.Room{Name: "r", SID: "RM_x"}, Participants: []protocol.Participant{}, ResumeToken: "RS_x"}
			}
			if ws.WriteJSON(reply) != nil {
				return
			}
		}
	}))
	defer srv.Close()
	api, err := client.LoopbackAPI()
	if err != nil {
		t.Fatal(err)
	}
	url := "ws" + strings.TrimPrefix(srv.URL, "http")
	c, err := client.Dial(ctxT(t, 30*time.Second), url, "r", client.Options{Name: "a", API: api, LazyPublisher: true})
	if err != nil {
		t.Fatalf("dial after two 503s: %v (%d joins)", err, joins.Load())
	}
	defer c.Close()
	if id := c.ParticipantID(); id != "PA_retried" || joins.Load() != 3 {
		b, _ := json.Marshal(c.Join)
		t.Fatalf("joined as %q after %d joins (%s), want PA_retried after 3", id, joins.Load(), b)
	}
}
