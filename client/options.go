package client

import (
	"context"
	"log/slog"
	"net"
	"time"

	"github.com/gorilla/websocket"
	"github.com/pion/webrtc/v4"
)

// Options configure a client.
type Options struct {
	Name          string
	Token         string
	Metadata      string
	AutoSubscribe *bool       // nil = server default (true)
	API           *webrtc.API // nil = NewAPI()
	Logger        *slog.Logger
	// ICETransportPolicy "relay" makes both connections use only TURN
	// relays (from join's iceServers); the default uses every candidate.
	ICETransportPolicy webrtc.ICETransportPolicy
	// AutoResume: when the signaling socket drops, redial and resume the
	// session (see Resume) until ResumeWindow has passed, instead of ending.
	AutoResume bool
	// ResumeWindow is how long AutoResume keeps trying; default 30s, the
	// server's default window.
	ResumeWindow time.Duration
	// NoCompression turns off WebSocket permessage-deflate, which the
	// client otherwise offers.
	NoCompression bool
	// NetDialContext, if set, opens the signaling TCP connection (a proxy,
	// or a test counting bytes on the wire).
	NetDialContext func(ctx context.Context, network, addr string) (net.Conn, error)
	// LazyPublisher opens the publisher connection only when it is first
	// needed (Publish, SendData) instead of at join. A participant that
	// only receives (a webinar viewer) then costs the server, and itself,
	// one negotiated peer connection instead of two.
	LazyPublisher bool
	// AudioMix asks at join for the room's audio as one mixed track
	// (source "mix") instead of every participant's; see SetAudioMix.
	AudioMix bool
	// ReadTimeout ends a signaling socket on which nothing (not even the
	// server's WebSocket ping, sent every 10 s) arrived for that long, so
	// a node that died without closing it is noticed and, with
	// AutoResume, left for another. 0 = DefaultReadTimeout; negative = none.
	ReadTimeout time.Duration
	// URLs are more nodes of the same service (a cluster, or spare
	// single nodes), tried after Dial's url; see failover.go.
	URLs []string
	// Rejoin: when the session cannot be resumed (a resume refused with
	// 404, or the node ended the session because it shut down), join the
	// room afresh through the next URL that answers, publish the tracks
	// again, and record EventRejoined. It implies AutoResume.
	Rejoin bool
}

// dialer is the WebSocket dialer for o.
func (o Options) dialer() *websocket.Dialer {
	d := *websocket.DefaultDialer
	d.EnableCompression = !o.NoCompression
	d.NetDialContext = o.NetDialContext
	return &d
}

// DefaultReadTimeout is Options.ReadTimeout's default: two and a half of
// the server's ping intervals.
const DefaultReadTimeout = 25 * time.Second

func (o Options) readTimeout() time.Duration {
	switch {
	case o.ReadTimeout < 0:
		return 0
	case o.ReadTimeout == 0:
		return DefaultReadTimeout
	}
	return o.ReadTimeout
}
