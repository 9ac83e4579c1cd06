package client

import (
	"log/slog"

	"github.com/pion/webrtc/v4"
	"github.com/starling-rtc/starling/internal/pcclose"
)

// closePeer closes pc, waiting at most 10 s: pion can deadlock in
// PeerConnection.Close (internal/pcclose says how, and what a connection
// left behind keeps).
func closePeer(pc *webrtc.PeerConnection, log *slog.Logger) {
	_ = pcclose.Close(pc, log)
}
