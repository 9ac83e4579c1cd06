package server_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/starling-rtc/starling/client"
)

// TestLeaveDoesNotResume: a client with AutoResume that leaves does not
// take the server's closing of the socket after `leave` for a drop. It
// did (issue 17, seen in the soak for almost every publisher): the reader
// saw the close before Leave marked the client closed, reported
// EventDisconnected and dialled a resume of the session it had just
// ended (refused with 404, or cut short by Close).
func TestLeaveDoesNotResume(t *testing.T) {
	parallel(t)
	srv := startServer(t, withResumeWindow(20*time.Second))
	for i := range 10 {
		c := join(t, srv, "leave-resume", fmt.Sprintf("c%d", i), autoResume)
		if err := c.Leave(ctxT(t, 10*time.Second)); err != nil {
			t.Fatalf("leave %d: %v", i, err)
		}
		// Leave returns after Close, which waits for the reader and any
		// resume it started: the events are final.
		for _, e := range c.Events() {
			switch e.Method {
			case client.EventDisconnected, client.EventResumeFailed, client.EventResumed:
				t.Fatalf("leave %d: the client took its own leave for a drop: %v", i, methods(c.Events()))
			}
		}
	}
}
