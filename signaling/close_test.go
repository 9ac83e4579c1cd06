package signaling

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/starling-rtc/starling/protocol"
)

func TestCloseFlushesQueue(t *testing.T) {
	longReason := strings.Repeat("é", 100) // 200 bytes: must be cut on a rune boundary
	tests := []struct {
		name       string
		queued     int
		code       int
		reason     string
		wantCode   int
		wantReason string
	}{
		{name: "nothing queued", queued: 0, code: 4000, reason: "bye", wantCode: 4000, wantReason: "bye"},
		{name: "one queued", queued: 1, code: 1000, reason: "kicked", wantCode: 1000, wantReason: "kicked"},
		{name: "full queue", queued: 256, code: 1001, reason: "serverShutdown", wantCode: 1001, wantReason: "serverShutdown"},
		{name: "invalid code becomes 1000", queued: 3, code: 1006, reason: "x", wantCode: 1000, wantReason: "x"},
		{name: "long reason is cut", queued: 2, code: 4001, reason: longReason, wantCode: 4001, wantReason: strings.Repeat("é", 61)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, Options{SendQueue: 256}, nil)
			ws, d := h.dial()
			for i := range tc.queued {
				if err := d.conn.Notify("seq", map[string]int{"i": i}); err != nil {
					t.Fatalf("Notify %d: %v", i, err)
				}
			}
			d.conn.Close(tc.code, tc.reason)
			d.conn.Close(4999, "second close is ignored")
			if err := d.conn.Notify("late", nil); !errors.Is(err, ErrClosed) {
				t.Errorf("Notify after Close = %v, want ErrClosed", err)
			}
			msgs, ce := readClose(t, ws)
			if len(msgs) != tc.queued {
				t.Fatalf("got %d messages before the close frame, want %d", len(msgs), tc.queued)
			}
			for i, m := range msgs {
				if m.str("method") != `"seq"` || m.str("params") != fmt.Sprintf(`{"i":%d}`, i) {
					t.Fatalf("message %d = %v", i, m)
				}
			}
			if ce.Code != tc.wantCode || ce.Text != tc.wantReason {
				t.Errorf("close = %d %q, want %d %q", ce.Code, ce.Text, tc.wantCode, tc.wantReason)
			}
			waitClosed(t, d, 5*time.Second)
		})
	}
}

// TestCloseInsideRequest is the `leave` flow: the session closes the socket
// from inside the request, and the client still gets the notifications sent
// before, then the response, then the close frame.
func TestCloseInsideRequest(t *testing.T) {
	tests := []struct {
		name        string
		frame       string
		notifyFirst bool
		wantMsgs    []string // method or id of each message before the close frame
	}{
		{name: "leave request", frame: `{"jsonrpc":"2.0","id":"L","method":"leave"}`, wantMsgs: []string{`"L"`}},
		{name: "notification then response", frame: `{"jsonrpc":"2.0","id":7,"method":"leave"}`, notifyFirst: true,
			wantMsgs: []string{`"participantLeft"`, `7`}},
		{name: "close from a notification", frame: `{"jsonrpc":"2.0","method":"leave"}`, wantMsgs: nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, Options{}, func(d *fakeDispatcher) {
				leave := func(d *fakeDispatcher) {
					if tc.notifyFirst {
						_ = d.conn.Notify(protocol.NotifyParticipantLeft, protocol.ParticipantLeftParams{ParticipantID: "p", Reason: protocol.ReasonClientLeave})
					}
					d.conn.Close(websocket.CloseNormalClosure, protocol.ReasonClientLeave)
					if err := d.conn.Notify("afterClose", nil); !errors.Is(err, ErrClosed) {
						t.Errorf("Notify after Close inside a call = %v", err)
					}
					time.Sleep(30 * time.Millisecond) // the writer must wait for the response anyway
				}
				d.onRequest = func(d *fakeDispatcher, _ string, _ json.RawMessage) (any, *protocol.Error) {
					leave(d)
					return nil, nil
				}
				d.onNotification = func(d *fakeDispatcher, _ string, _ json.RawMessage) *protocol.Error {
					leave(d)
					return nil
				}
			})
			ws, d := h.dial()
			send(t, ws, tc.frame)
			send(t, ws, `{"jsonrpc":"2.0","id":"ignored","method":"ping"}`) // arrives while closing
			msgs, ce := readClose(t, ws)
			var got []string
			for _, m := range msgs {
				if id, ok := m["id"]; ok {
					got = append(got, string(id))
					if m.str("result") != "{}" {
						t.Errorf("response = %v, want result {}", m)
					}
				} else {
					got = append(got, m.str("method"))
				}
			}
			if strings.Join(got, ",") != strings.Join(tc.wantMsgs, ",") {
				t.Errorf("messages before close = %v, want %v", got, tc.wantMsgs)
			}
			if ce.Code != websocket.CloseNormalClosure || ce.Text != protocol.ReasonClientLeave {
				t.Errorf("close = %d %q", ce.Code, ce.Text)
			}
			waitClosed(t, d, 5*time.Second)
			if calls := d.callLog(); len(calls) != 1 {
				t.Errorf("frames after Close reached the dispatcher: %v", calls)
			}
		})
	}
}

// TestAfterResponse: work done in AfterResponse follows the response on the
// wire (the first subscriber offer after `join`, the close after `leave`).
func TestAfterResponse(t *testing.T) {
	tests := []struct {
		name      string
		frame     string
		inCall    bool   // Notify inside the call as well
		after     string // "notify", "close" or "panic"
		wantMsgs  []string
		wantClose bool
	}{
		{name: "offer follows join response", frame: `{"jsonrpc":"2.0","id":1,"method":"join"}`, after: "notify",
			wantMsgs: []string{`1`, `"offer"`}},
		{name: "notifications in the call come first", frame: `{"jsonrpc":"2.0","id":2,"method":"join"}`, inCall: true, after: "notify",
			wantMsgs: []string{`"participantJoined"`, `2`, `"offer"`}},
		{name: "error response first too", frame: `{"jsonrpc":"2.0","id":3,"method":"fail"}`, after: "notify",
			wantMsgs: []string{`3`, `"offer"`}},
		{name: "after a notification", frame: `{"jsonrpc":"2.0","method":"answer"}`, after: "notify",
			wantMsgs: []string{`"offer"`}},
		{name: "close after leave", frame: `{"jsonrpc":"2.0","id":"L","method":"leave"}`, after: "close",
			wantMsgs: []string{`"L"`}, wantClose: true},
		{name: "panic is contained", frame: `{"jsonrpc":"2.0","id":4,"method":"join"}`, after: "panic",
			wantMsgs: []string{`4`}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, Options{}, func(d *fakeDispatcher) {
				d.onRequest = func(d *fakeDispatcher, method string, _ json.RawMessage) (any, *protocol.Error) {
					if tc.inCall && method == "join" {
						_ = d.conn.Notify(protocol.NotifyParticipantJoined, nil)
					}
					if method == "fail" {
						return nil, protocol.Errorf(protocol.CodeConflict, "no")
					}
					return nil, nil
				}
				d.onAfter = func(d *fakeDispatcher) {
					if calls := d.callLog(); calls[len(calls)-1] == "request:ping" {
						return
					}
					switch tc.after {
					case "notify":
						_ = d.conn.Notify(protocol.MethodOffer, protocol.SDPParams{SDP: "v=0"})
					case "close":
						d.conn.Close(websocket.CloseNormalClosure, protocol.ReasonClientLeave)
					case "panic":
						panic("after")
					}
				}
			})
			ws, d := h.dial()
			send(t, ws, tc.frame)
			var got []string
			for range tc.wantMsgs {
				m := readMessage(t, ws)
				if id, ok := m["id"]; ok {
					got = append(got, string(id))
				} else {
					got = append(got, m.str("method"))
				}
			}
			if strings.Join(got, ",") != strings.Join(tc.wantMsgs, ",") {
				t.Errorf("messages = %v, want %v", got, tc.wantMsgs)
			}
			if tc.wantClose {
				if _, ce := readClose(t, ws); ce.Code != websocket.CloseNormalClosure {
					t.Errorf("close code = %d", ce.Code)
				}
				waitClosed(t, d, 5*time.Second)
				return
			}
			ping(t, ws, `"alive"`)
			// It runs after the ping's response is queued, so give it a moment.
			for deadline := time.Now().Add(5 * time.Second); d.afterCount.Load() < 2 && time.Now().Before(deadline); {
				time.Sleep(time.Millisecond)
			}
			if n := d.afterCount.Load(); n != 2 { // the call and the ping
				t.Errorf("AfterResponse ran %d times, want 2", n)
			}
		})
	}
}
