package client

import (
	"log/slog"
	"time"

	"github.com/pion/webrtc/v4"
)

// closeWait bounds how long closing one peer connection may take.
const closeWait = 10 * time.Second

// closePeer closes pc, waiting at most closeWait. pion v4.2.26 can
// deadlock in PeerConnection.Close: DTLSTransport.Stop holds the
// transport's lock while it waits for the SRTCP session to end, the
// session's reader is blocked handing a new RTCP stream to an acceptor
// that is not running yet, and the queued operation that would start it
// (SetLocalDescription's Cryptex update) waits for that same lock. Seen
// once in the soak, a Leave during a renegotiation: the test hung for its
// whole timeout. A client that gives up after closeWait leaks that one
// connection's goroutines, but its caller (a user's Leave, a test) goes on.
func closePeer(pc *webrtc.PeerConnection, log *slog.Logger) {
	if pc == nil {
		return
	}
	done := make(chan struct{})
	go func() {
		_ = pc.Close()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(closeWait):
		log.Warn("peer connection close still blocked; leaving it (pion DTLS/SRTCP close deadlock)", "after", closeWait)
	}
}
