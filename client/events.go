package client

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/starling-rtc/starling/protocol"
)

// Event is a server notification, kept in order of arrival.
type Event struct {
	Method string
	Params json.RawMessage
}

func (c *Client) record(e Event) {
	c.emu.Lock()
	c.events = append(c.events, e)
	c.emu.Unlock()
	c.econd.Broadcast()
}

// Events returns a copy of the notifications received so far.
func (c *Client) Events() []Event {
	c.emu.Lock()
	defer c.emu.Unlock()
	return append([]Event(nil), c.events...)
}

// WaitEvent waits for the first notification, since the start, for which
// match returns true (match may be nil to accept any of method).
func (c *Client) WaitEvent(ctx context.Context, method string, match func(json.RawMessage) bool) (Event, error) {
	stop := context.AfterFunc(ctx, func() { c.emu.Lock(); c.econd.Broadcast(); c.emu.Unlock() })
	defer stop()
	c.emu.Lock()
	defer c.emu.Unlock()
	i := 0
	for {
		for ; i < len(c.events); i++ {
			e := c.events[i]
			if e.Method == method && (match == nil || match(e.Params)) {
				return e, nil
			}
		}
		if ctx.Err() != nil {
			return Event{}, fmt.Errorf("waiting for %s: %w", method, ctx.Err())
		}
		c.econd.Wait()
	}
}

func idString(raw json.RawMessage) string {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	return string(raw)
}

func mustJSON(v any) json.RawMessage {
	b, _ := json.Marshal(v)
	return b
}

// SetAudioMix switches between the room's audio mix (one track with source
// "mix", announced by trackPublished) and the other participants' audio
// tracks; the server renegotiates the subscriber connection either way.
func (c *Client) SetAudioMix(ctx context.Context, enabled bool) error {
	return c.Call(ctx, protocol.MethodSetAudioMix, protocol.SetAudioMixParams{Enabled: &enabled}, nil)
}
