package signaling

import (
	"encoding/json"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/starling-rtc/starling/protocol"
)

func TestKeepaliveAndReadTimeout(t *testing.T) {
	// Margins are wide (a frame every 50ms against a 500ms timeout) so a
	// loaded machine does not make a live client look silent.
	opts := Options{PingInterval: 50 * time.Millisecond, ReadTimeout: 500 * time.Millisecond}
	const observe = 1500 * time.Millisecond // three read timeouts
	tests := []struct {
		name      string
		client    func(ws *websocket.Conn, stop <-chan struct{}) // runs until stop
		wantDrop  bool
		wantPings bool
	}{
		{
			name:      "reading client answers pings",
			wantPings: true,
			client: func(ws *websocket.Conn, stop <-chan struct{}) {
				for {
					if _, _, err := ws.ReadMessage(); err != nil {
						return // gorilla answers pings while reading
					}
				}
			},
		},
		{
			name: "client that only sends frames",
			client: func(ws *websocket.Conn, stop <-chan struct{}) {
				tick := time.NewTicker(50 * time.Millisecond)
				defer tick.Stop()
				for {
					select {
					case <-stop:
						return
					case <-tick.C:
						if ws.WriteMessage(websocket.TextMessage, []byte(`{"jsonrpc":"2.0","method":"candidate"}`)) != nil {
							return
						}
					}
				}
			},
		},
		{
			name:     "silent client",
			wantDrop: true,
			client:   func(*websocket.Conn, <-chan struct{}) {},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, opts, nil)
			ws, d := h.dial()
			var wg sync.WaitGroup
			pingCount := make(chan struct{}, 1000)
			ws.SetPingHandler(func(data string) error {
				pingCount <- struct{}{}
				return ws.WriteControl(websocket.PongMessage, []byte(data), time.Now().Add(time.Second))
			})
			stop := make(chan struct{})
			wg.Add(1)
			go func() {
				defer wg.Done()
				tc.client(ws, stop)
			}()
			start := time.Now()
			wait := observe
			if tc.wantDrop {
				wait = 10 * time.Second
			}
			select {
			case <-d.closed:
				if !tc.wantDrop {
					t.Fatalf("live client dropped after %v; log:\n%s", time.Since(start), h.logs.String())
				}
				if el := time.Since(start); el < opts.ReadTimeout*3/4 {
					t.Errorf("dropped after %v, before the read timeout %v", el, opts.ReadTimeout)
				}
			case <-time.After(wait):
				if tc.wantDrop {
					t.Fatalf("silent client still connected after %v; log:\n%s", wait, h.logs.String())
				}
			}
			close(stop)
			ws.Close()
			wg.Wait()
			if tc.wantPings && len(pingCount) < 5 {
				t.Errorf("client saw %d pings in %v, want at least 5", len(pingCount), observe)
			}
		})
	}
}

// TestSlowDispatcher: a Dispatcher call longer than ReadTimeout must not be
// mistaken for a silent peer.
func TestSlowDispatcher(t *testing.T) {
	opts := Options{PingInterval: 50 * time.Millisecond, ReadTimeout: 200 * time.Millisecond}
	tests := []struct {
		name  string
		frame string
		sleep time.Duration
	}{
		{name: "request shorter than the timeout", frame: `{"jsonrpc":"2.0","id":1,"method":"slow"}`, sleep: 50 * time.Millisecond},
		{name: "request longer than the timeout", frame: `{"jsonrpc":"2.0","id":1,"method":"slow"}`, sleep: 600 * time.Millisecond},
		{name: "notification longer than the timeout", frame: `{"jsonrpc":"2.0","method":"slow"}`, sleep: 600 * time.Millisecond},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, opts, func(d *fakeDispatcher) {
				d.onRequest = func(_ *fakeDispatcher, method string, _ json.RawMessage) (any, *protocol.Error) {
					if method == "slow" {
						time.Sleep(tc.sleep)
					}
					return nil, nil
				}
				d.onNotification = func(*fakeDispatcher, string, json.RawMessage) *protocol.Error {
					time.Sleep(tc.sleep)
					return nil
				}
			})
			ws, d := h.dial()
			send(t, ws, tc.frame)
			// Sent while the dispatcher is still busy, after the first frame
			// has been consumed, so the server must really read it again.
			time.Sleep(tc.sleep / 2)
			send(t, ws, `{"jsonrpc":"2.0","id":"next","method":"ping"}`)
			for {
				m := readMessage(t, ws)
				if m.str("id") == `"next"` {
					break
				}
			}
			select {
			case <-d.closed:
				t.Fatalf("connection dropped; log:\n%s", h.logs.String())
			default:
			}
		})
	}
}
