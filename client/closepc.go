package client

import (
	"log/slog"
	"time"

	"github.com/pion/webrtc/v4"
)

// closeWait bounds how long closing one peer connection may take (a
// variable for the test that makes pion's close deadlock).
var closeWait = 10 * time.Second

// closePeer closes pc, waiting at most closeWait. pion v4.2.26 (and
// v4.2.29, the newest checked) can deadlock in PeerConnection.Close:
// DTLSTransport.Stop holds the transport's lock while it waits for the
// SRTCP session to end, the session's reader is blocked handing a new RTCP
// stream to an acceptor that is not running yet (a connection's acceptors
// start in a queued operation of its first negotiation with media, and
// SRTP starts as soon as anything sends; the publisher connection starts
// with a data channel alone), and the queued operation that would start
// it, or one before it (SetLocalDescription's Cryptex update), waits for
// that same lock. Seen once in the soak, a Leave during a renegotiation:
// the test hung for its whole timeout. A client cannot end the deadlock
// (the session is pion's own), so one that gives up after closeWait
// leaves that connection behind. It then stops the connection's ICE
// transport, which the stuck Close would have stopped next: the agent, its
// sockets and their readers go. Left are the deadlock's own goroutines
// (Close, the SRTCP reader, the queued operation, the handler of the last
// ICE state change, all waiting for the DTLS transport) and the loops of
// the connection's interceptors (closed last by Close): 7 of pion's, where
// a live connection was left before (11 goroutines over in that soak run,
// and its sockets open). Its caller (a user's Leave, a test) goes on.
// TestClosePeerDeadlockFreesICE makes the deadlock happen.
func closePeer(pc *webrtc.PeerConnection, log *slog.Logger) {
	if pc == nil {
		return
	}
	// Taken now: once Close holds the DTLS transport's lock, asking it for
	// its ICE transport would wait as long.
	var ice *webrtc.ICETransport
	if sctp := pc.SCTP(); sctp != nil {
		if dtls := sctp.Transport(); dtls != nil {
			ice = dtls.ICETransport()
		}
	}
	done := make(chan struct{})
	go func() {
		_ = pc.Close()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(closeWait):
		log.Warn("peer connection close still blocked; leaving it, its ICE transport stopped (pion DTLS/SRTCP close deadlock)", "after", closeWait)
		if ice != nil {
			_ = ice.Stop()
		}
	}
}
