package cluster_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/gorilla/websocket"
	"github.com/starling-rtc/starling/auth"
	"github.com/starling-rtc/starling/config"
	"github.com/starling-rtc/starling/server"
)

// Two joins of one identity at once on two nodes, the first one's
// participant admitted to its node's room only after the check its join
// scheduled had run. n1's join takes the identity while n0's join holds
// it and has not written its member yet (n0's slot claimed: the order
// TestOutsiderSimultaneousIdentityAcrossNodes hits in about one room of
// five), so nobody ends n0's participant but that check. The check ran
// once, confirmAfter after the join, and on a starved machine found the
// participant not yet in the room: both stayed for good (the outsider
// test failed so once under -race at load 27). It comes back until the
// participant is there now, and n0's socket hears leave.
func TestIdentityCheckWaitsForLateAdmission(t *testing.T) {
	parallel(t)
	srvs := startCluster(t, 2, func(c *config.Config) {
		withKeys(c)
		c.Room.NegotiationTimeout = config.Duration(2 * time.Minute) // the sockets never answer the offer
	})
	const name = "identity-late-admission"
	tok, err := auth.Issue(testAPIKey, testAPISecret, auth.Claims{RegisteredClaims: jwt.RegisteredClaims{Subject: "same-person"}, Grants: auth.Grants{Room: name}}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	var second *rawSocket
	var once sync.Once
	srvs[0].Cluster().OnSlotClaimed(func() {
		once.Do(func() { // n0's member is not written yet
			var err error
			if second, err = identitySocket(t, srvs[1], name, tok); err != nil {
				t.Error(err)
			}
		})
	})
	checked := make(chan struct{}, 1)
	srvs[0].Cluster().OnIdentityChecked(func(local bool) {
		if !local {
			select {
			case checked <- struct{}{}:
			default:
			}
		}
	})
	srvs[0].Cluster().OnJoinReturns(func() {
		select { // admitted once a check has found it missing
		case <-checked:
		case <-time.After(30 * time.Second):
			t.Error("n0's identity check never ran before the participant was admitted")
		}
	})
	first, err := identitySocket(t, srvs[0], name, tok)
	if err != nil || second == nil {
		t.Fatalf("n0's join: %v (n1's: %v)", err, second != nil)
	}
	eventually(t, 20*time.Second, "n0's participant told to leave (n1's join holds the identity)", func() bool {
		return first.left() > 0
	})
	if second.left() > 0 {
		t.Fatal("n1's participant, which holds the identity, was told to leave too")
	}
}

// rawSocket is a signaling socket joined with a raw join request; it
// counts the leave notifications it hears.
type rawSocket struct {
	mu    sync.Mutex
	leave int
}

func (s *rawSocket) left() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.leave
}

// identitySocket joins room on srv with token and returns once the join
// is answered. It may run outside the test's goroutine (no t.Fatal).
func identitySocket(t *testing.T, srv *server.Server, room, token string) (*rawSocket, error) {
	ws, _, err := websocket.DefaultDialer.Dial(srv.SignalingURL(), nil)
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() { _ = ws.Close() })
	frame, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": 1, "method": "join", "params": map[string]any{"room": room, "token": token}})
	if err := ws.WriteMessage(websocket.TextMessage, frame); err != nil {
		return nil, err
	}
	s := &rawSocket{}
	answered := make(chan string, 1)
	go func() {
		for {
			_, b, err := ws.ReadMessage()
			if err != nil {
				answered <- "socket closed: " + err.Error()
				return
			}
			msg := string(b)
			switch {
			case strings.Contains(msg, `"method":"leave"`):
				s.mu.Lock()
				s.leave++
				s.mu.Unlock()
			case strings.Contains(msg, `"id":1`) && strings.Contains(msg, `"error"`):
				answered <- msg
			case strings.Contains(msg, `"id":1`):
				answered <- ""
			}
		}
	}()
	select {
	case e := <-answered:
		if e != "" {
			return nil, fmt.Errorf("join %s through %s: %s", room, srv.BaseURL(), e)
		}
	case <-time.After(60 * time.Second):
		return nil, fmt.Errorf("join %s through %s: no answer", room, srv.BaseURL())
	}
	return s, nil
}
