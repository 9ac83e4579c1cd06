package client

// Test hooks for resume_race_test.go (package client_test), which needs a
// real server and so cannot live in this package.

// TestHooks order a resume's steps against the socket readers.
type TestHooks struct {
	// BeforeResumed runs when an attempt has resumed the session, before
	// its outcome is settled and reported.
	BeforeResumed func()
	// AttemptFailed runs in AutoResume's loop after a failed attempt,
	// before its backoff.
	AttemptFailed func(error)
	// SocketLost runs when a socket's reader ends (n counts the client's
	// sockets lost so far, from 1); it must call lost, which does what the
	// reader does without the hook.
	SocketLost func(n int, lost func())
}

// SetTestHooks installs h on c.
func SetTestHooks(c *Client, h TestHooks) {
	var n int
	var mu = make(chan struct{}, 1)
	c.hooks.Store(&testHooks{
		beforeResumed: h.BeforeResumed,
		attemptFailed: h.AttemptFailed,
		socketLost: func(_ *socket, lost func()) {
			if h.SocketLost == nil {
				lost()
				return
			}
			mu <- struct{}{}
			n++
			k := n
			<-mu
			h.SocketLost(k, lost)
		},
	})
}

// SocketDone is closed when c's current signaling socket's reader has
// ended.
func SocketDone(c *Client) <-chan struct{} { return c.socket().done }
