package cluster_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/pion/webrtc/v4"
	"github.com/starling-rtc/starling/client"
	"github.com/starling-rtc/starling/protocol"
)

// A draining node (SIGTERM) refuses joins with 503 and a reason that says
// so, never 500, so that a client or a load balancer goes to another node
// (a 500 reads as a fault of the server): a raw join over the socket, a
// WHIP publisher's and a WHEP player's POST (with Retry-After), and the Go
// client given the draining node first and another one after it joins the
// other. Before, the socket's join answered 500 "server is shutting down".
func TestDrainingNodeRefusesJoinsWith503(t *testing.T) {
	parallel(t)
	const roomName = "drain-refuse"
	srvs := startCluster(t, 3, nil)
	// A participant whose raw client never resumes elsewhere keeps n0
	// draining until the context ends.
	ws := rawJoin(t, srvs[0].SignalingURL(), roomName)
	defer ws.Close()
	if _, data, err := ws.ReadMessage(); err != nil || !strings.Contains(string(data), `"result"`) {
		t.Fatalf("join: %v %s", err, data)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	drained := make(chan struct{})
	go func() { defer close(drained); srvs[0].Drain(ctx) }()
	defer func() { cancel(); <-drained }()
	eventually(t, 20*time.Second, "n0 drains", func() bool { return srvs[0].Rooms().Draining() })

	late := rawJoin(t, srvs[0].SignalingURL(), roomName)
	defer late.Close()
	for {
		_, data, err := late.ReadMessage()
		if err != nil {
			t.Fatalf("the join on the draining node got no answer: %v", err)
		}
		var m protocol.Message
		if json.Unmarshal(data, &m) != nil || m.ID == nil {
			continue // a notification
		}
		if m.Error == nil || m.Error.Code != protocol.CodeUnavailable || !strings.Contains(m.Error.Message, "draining") {
			t.Fatalf("a join on the draining node answered %s, want error 503 saying the node drains", data)
		}
		break
	}

	for _, c := range []struct{ what, path, offer string }{
		{"a WHIP publisher's POST", "/whip", offerOf(t, webrtc.RTPTransceiverDirectionSendonly)},
		{"a WHEP player's POST", "/whep", offerOf(t, webrtc.RTPTransceiverDirectionRecvonly)},
	} {
		req, _ := http.NewRequest(http.MethodPost, srvs[0].BaseURL()+"/v1/rooms/"+roomName+c.path, strings.NewReader(c.offer))
		req.Header.Set("Content-Type", "application/sdp")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
			t.Errorf("%s on the draining node: %d (Retry-After %q), want 503 with Retry-After", c.what, resp.StatusCode, resp.Header.Get("Retry-After"))
		}
	}

	join(t, srvs[0], roomName, "later", func(o *client.Options) { o.URLs = []string{srvs[1].SignalingURL()} })
	if srvs[1].Rooms().Room(roomName) == nil {
		t.Error("the Go client given the draining node first did not join n1")
	}
}

// rawJoin opens a signaling socket and sends a join of room.
func rawJoin(t *testing.T, url, room string) *websocket.Conn {
	t.Helper()
	ws, _, err := (&websocket.Dialer{HandshakeTimeout: 10 * time.Second}).Dial(url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := ws.WriteMessage(websocket.TextMessage, []byte(`{"jsonrpc":"2.0","id":1,"method":"join","params":{"room":"`+room+`"}}`)); err != nil {
		t.Fatal(err)
	}
	_ = ws.SetReadDeadline(time.Now().Add(20 * time.Second))
	return ws
}

// offerOf is a complete offer (every candidate gathered) of an audio and a
// video transceiver in direction dir.
func offerOf(t *testing.T, dir webrtc.RTPTransceiverDirection) string {
	t.Helper()
	return offeringPeer(t, dir).LocalDescription().SDP
}
