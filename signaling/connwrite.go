package signaling

import (
	"compress/flate"
	"errors"
	"time"

	"github.com/gorilla/websocket"
)

// The connection's writer goroutine: queued messages, pings, and the
// close handshake.

func (c *Conn) writeLoop() {
	defer close(c.writerDone)
	ping := time.NewTicker(c.opts.PingInterval)
	defer ping.Stop()
	for {
		select {
		case frame := <-c.send:
			_ = c.ws.SetWriteDeadline(time.Now().Add(c.opts.WriteTimeout))
			if err := c.writeFrame(frame); err != nil {
				c.writeFailed(err)
				return
			}
		case <-ping.C:
			if err := c.ws.WriteControl(websocket.PingMessage, nil, time.Now().Add(c.opts.WriteTimeout)); err != nil {
				c.writeFailed(err)
				return
			}
		case <-c.closeReq:
			c.flushAndClose()
			return
		case <-c.readEnded:
			return
		}
	}
}

// Messages are compressed one by one (no context takeover), by size.
// Deflate's best level resets 640 KB of match tables per message, tens of
// µs: for activeSpeakers sent to every participant of a large room it was 9%
// of the server's CPU, so only SDP-sized messages get it. Under
// compressMin bytes (speaker updates naming one or two speakers) deflate saves a
// few bytes for a Huffman table build per message, so they go as they are
// (candidates are larger and do shrink).
const (
	compressMin        = 160
	bestCompressionMin = 1024
)

// writeFrame sends one text message (compressed if the client negotiated
// it and the message is large enough).
func (c *Conn) writeFrame(frame []byte) error {
	c.ws.EnableWriteCompression(len(frame) >= compressMin)
	level := flate.BestSpeed
	if len(frame) >= bestCompressionMin {
		level = flate.BestCompression
	}
	_ = c.ws.SetCompressionLevel(level)
	return c.ws.WriteMessage(websocket.TextMessage, frame)
}

// writeFailed wakes the reader so it tears the connection down.
func (c *Conn) writeFailed(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.abortLocked(err)
}

func (c *Conn) flushAndClose() {
	deadline := time.Now().Add(c.opts.WriteTimeout)
	_ = c.ws.SetWriteDeadline(deadline)
flush:
	for {
		select {
		case frame := <-c.send:
			if err := c.writeFrame(frame); err != nil {
				c.writeFailed(err)
				return
			}
		default:
			break flush
		}
	}
	c.mu.Lock()
	frame := c.closeFrame
	c.mu.Unlock()
	if err := c.ws.WriteControl(websocket.CloseMessage, frame, deadline); err != nil {
		c.writeFailed(err)
		return
	}
	// The peer answers with its own close frame, which ends the reader; only
	// then is it safe to close TCP (see maxCloseWait).
	t := time.NewTimer(c.closeWait())
	defer t.Stop()
	select {
	case <-c.readEnded:
	case <-t.C:
		c.writeFailed(errors.New("peer did not answer the close frame"))
	}
}
