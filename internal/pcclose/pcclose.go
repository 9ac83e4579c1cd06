// Package pcclose closes pion peer connections without hanging on pion's
// close deadlock; the Go client and the server's SFU both close theirs
// through it.
package pcclose

import (
	"errors"
	"log/slog"
	"time"

	"github.com/pion/webrtc/v4"
)

// wait bounds how long closing one peer connection may take (a variable
// for the test that makes pion's close deadlock).
var wait = 10 * time.Second

// ErrStuck is returned when a connection's Close did not finish within
// the wait: it was left behind, its ICE transport stopped.
var ErrStuck = errors.New("peer connection close blocked (pion DTLS/SRTCP close deadlock): left behind, its ICE transport stopped")

// Close closes pc, waiting at most 10 s. pion v4.2.26 (and v4.2.29, the
// newest checked) can deadlock in PeerConnection.Close:
// DTLSTransport.Stop holds the transport's lock while it waits for the
// SRTCP session to end, the session's reader is blocked handing a new RTCP
// stream to an acceptor that is not running yet (a connection's acceptors
// start in a queued operation of its first negotiation with media, and
// SRTP starts as soon as anything sends; the Go client's publisher
// connection and the server's subscriber connection start with a data
// channel alone), and the queued operation that would start it, or one
// before it (SetLocalDescription's Cryptex update), waits for that same
// lock. Seen once in the soak, a client's Leave during a renegotiation: the
// test hung for its whole timeout. Nobody outside pion can end the
// deadlock (the session is pion's own), so Close gives up after its wait
// and leaves that connection behind. It then stops the connection's ICE
// transport, which the stuck Close would have stopped next: the agent, its
// sockets and their readers go. Left are the deadlock's own goroutines
// (Close, the SRTCP reader, the queued operation, the handler of the last
// ICE state change, all waiting for the DTLS transport) and the loops of
// the connection's interceptors (closed last by Close): 7-8 of pion's,
// where a live connection was left before (11 goroutines over in that soak run,
// and its sockets open). Its caller (a Leave, a participant's end, a
// shutdown waiting for it) goes on. TestDeadlockFreesICE makes the
// deadlock happen. log may be nil.
func Close(pc *webrtc.PeerConnection, log *slog.Logger) error {
	if pc == nil {
		return nil
	}
	// Taken now: once Close holds the DTLS transport's lock, asking it for
	// its ICE transport would wait as long.
	var ice *webrtc.ICETransport
	if sctp := pc.SCTP(); sctp != nil {
		if dtls := sctp.Transport(); dtls != nil {
			ice = dtls.ICETransport()
		}
	}
	done := make(chan error, 1)
	go func() { done <- pc.Close() }()
	select {
	case err := <-done:
		return err
	case <-time.After(wait):
	}
	if log != nil {
		log.Warn("peer connection close still blocked; leaving it, its ICE transport stopped (pion DTLS/SRTCP close deadlock)", "after", wait)
	}
	if ice != nil {
		_ = ice.Stop()
	}
	return ErrStuck
}
