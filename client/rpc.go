package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/gorilla/websocket"

	"github.com/starling-rtc/starling/protocol"
)

// JSON-RPC over the signaling socket: requests and their responses,
// notifications, and the reader that routes what the server sends.

// Call sends a request and decodes its result into result (may be nil).
// A server error is returned as *protocol.Error.
func (c *Client) Call(ctx context.Context, method string, params, result any) error {
	err := c.callOn(ctx, c.socket(), method, params, result)
	if err == nil {
		c.subs.record(method, params) // re-sent on resume (subscriptions.go)
	}
	return err
}

// callOn is Call on socket s: it fails when s is gone before the response.
func (c *Client) callOn(ctx context.Context, s *socket, method string, params, result any) error {
	id := strconv.FormatInt(c.next.Add(1), 10)
	ch := make(chan *protocol.Message, 1)
	c.pmu.Lock()
	c.pending[id] = ch
	c.pmu.Unlock()
	defer func() {
		c.pmu.Lock()
		delete(c.pending, id)
		c.pmu.Unlock()
	}()
	raw, err := json.Marshal(params)
	if err != nil {
		return err
	}
	if err := c.writeTo(s, protocol.Message{JSONRPC: "2.0", ID: json.RawMessage(strconv.Quote(id)), Method: method, Params: raw}); err != nil {
		return err
	}
	reply := func(m *protocol.Message) error {
		if m.Error != nil {
			return m.Error
		}
		if result != nil && len(m.Result) > 0 {
			return json.Unmarshal(m.Result, result)
		}
		return nil
	}
	select {
	case m := <-ch:
		return reply(m)
	case <-s.done:
		// The reader hands over a response before it closes done, so a
		// server that answers and then closes (leave) has answered: select
		// picks at random between ready cases (the soak saw `leave` fail
		// with "connection closed" about once in 900).
		select {
		case m := <-ch:
			return reply(m)
		default:
		}
		return errors.New("connection closed")
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Notify sends a notification.
func (c *Client) Notify(method string, params any) error {
	return c.notifyOn(nil, method, params)
}

// notifyOn sends a notification on socket s, or the current one if s is nil.
func (c *Client) notifyOn(s *socket, method string, params any) error {
	raw, err := json.Marshal(params)
	if err != nil {
		return err
	}
	return c.writeTo(s, protocol.Message{JSONRPC: "2.0", Method: method, Params: raw})
}

// writeTimeout bounds a write on the signaling socket, pongs included
// (watchSilence).
const writeTimeout = 10 * time.Second

// writeTo writes m on socket s, or the current one if s is nil.
func (c *Client) writeTo(s *socket, m protocol.Message) error {
	if s == nil {
		s = c.socket()
	}
	c.wmu.Lock()
	_ = s.ws.SetWriteDeadline(time.Now().Add(writeTimeout))
	c.msgsOut.Add(1)
	err := s.ws.WriteJSON(m)
	c.wmu.Unlock()
	if errors.Is(err, websocket.ErrCloseSent) {
		// The server closed the socket (gorilla answered its close frame,
		// so nothing more can be written): say why if it said so.
		c.rs.mu.Lock()
		why := c.rs.leftBecause
		c.rs.mu.Unlock()
		if why != "" {
			err = fmt.Errorf("the server ended the session (leave: %s): %w", why, err)
		}
	}
	return err
}

// MessageCounts is how many signaling messages the client sent and received.
func (c *Client) MessageCounts() (sent, received uint64) {
	return c.msgsOut.Load(), c.msgsIn.Load()
}

// readLoop reads socket s: it routes responses to callers, handles offers
// and candidates, and records every other notification as an Event.
func (c *Client) readLoop(s *socket) {
	defer c.wg.Done()
	timeout := c.watchSilence(s) // see failover.go
	for {
		var m protocol.Message
		if timeout > 0 {
			_ = s.ws.SetReadDeadline(time.Now().Add(timeout))
		}
		if err := s.ws.ReadJSON(&m); err != nil {
			s.err = err
			close(s.done)
			if h := c.hooks.Load(); h != nil && h.socketLost != nil {
				h.socketLost(s, func() { c.socketLost(s) })
				return
			}
			c.socketLost(s) // see resume.go
			return
		}
		c.msgsIn.Add(1)
		if m.Method == "" {
			c.pmu.Lock()
			ch := c.pending[idString(m.ID)]
			c.pmu.Unlock()
			if ch != nil {
				ch <- &m
			} else if m.Error != nil {
				c.record(Event{Method: "error", Params: mustJSON(m.Error)})
			}
			continue
		}
		switch m.Method {
		case protocol.MethodOffer:
			var p protocol.SDPParams
			if json.Unmarshal(m.Params, &p) == nil {
				select {
				case c.offers <- offer{sdp: p.SDP, s: s}:
				case <-c.closing():
				}
			}
		case protocol.MethodCandidate:
			var p protocol.CandidateParams
			if json.Unmarshal(m.Params, &p) == nil {
				c.cands.add(p)
			}
		case protocol.NotifyPublishLayers:
			c.handlePublishLayers(m.Params)
		case protocol.MethodLeave:
			c.serverLeft(m.Params) // see failover.go
		case protocol.NotifyReconnect:
			c.nodeLeaving() // see failover.go
		case protocol.NotifyTrackUnpublished:
			c.subs.forget(m.Params)
		}
		c.record(Event{Method: m.Method, Params: m.Params})
	}
}

func (c *Client) closing() <-chan struct{} {
	if c.closed.Load() {
		ch := make(chan struct{})
		close(ch)
		return ch
	}
	return nil
}
