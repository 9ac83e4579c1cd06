package client

// serverReconnect handles `reconnect` (docs/PROTOCOL.md): the node is
// draining and closes the socket next. The resume that follows starts with
// the next node, since this one refuses joins and resumes from now on.
func (c *Client) serverReconnect() {
	c.rs.mu.Lock()
	defer c.rs.mu.Unlock()
	if len(c.urls) > 1 {
		c.urlAt = (c.urlAt + 1) % len(c.urls)
	}
}
