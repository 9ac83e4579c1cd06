package client

import (
	"compress/flate"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/gorilla/websocket"
	"github.com/pion/webrtc/v4"
	"github.com/starling-rtc/starling/protocol"
)

// Failing over between nodes.
//
// A client knows one or more node URLs (Dial's url, comma-separated, then
// Options.URLs). It joins through the first that takes the join, in the
// order given: an application that wants to spread its users shuffles
// the list itself (a fixed order keeps tests and load generators
// deterministic). When the socket drops, each resume attempt starts with
// the node last joined (a network blip leaves it alive and holding the
// session) and goes on through the others in turn; a node that has shut
// down (`leave` serverShutdown) or is draining (`reconnect`) is tried last. A node that cannot be
// reached, fails (5xx) or does not answer in time passes the turn; a
// refusal (4xx) ends the attempt. AutoResume retries failed attempts, with
// a backoff, until ResumeWindow has passed.
//
// A resume through another node of a cluster brings new peer connections
// (JoinResult.NewConnections): the client replaces both and publishes its
// tracks again on the new publisher connection. After a drain (`reconnect`)
// it keeps the old ones open until their node closes them (drain.go). A node that does not know
// the session refuses the resume (404): with Options.Rejoin the client
// then joins afresh, as a new participant, publishes its tracks again and
// records EventRejoined.

// EventRejoined: the session could not be resumed, so the client joined
// the room again as a new participant, with new connections, and
// published its tracks again. Params: a Rejoined.
const EventRejoined = "client.rejoined"

// Rejoined is the params of EventRejoined.
type Rejoined struct {
	Join   protocol.JoinResult `json:"join"`   // the new participant and the room as it is now
	Tracks []protocol.Track    `json:"tracks"` // the tracks published again, with their new ids
	Reason string              `json:"reason"` // why the resume failed
}

// nodeDialTimeout bounds the WebSocket dial to one node when there are
// others to try: a dead host that drops packets would otherwise hold the
// whole attempt.
const nodeDialTimeout = 5 * time.Second

// nodeJoinTimeout bounds one node's answer to `join` when there are other
// nodes to try, or during a resume (whose context is the whole window): a
// node that hangs (a cluster that lost its majority, a process stuck)
// passes the turn instead of holding the session. The JS library's
// request timeout plays this part there.
const nodeJoinTimeout = 15 * time.Second

// ServerURLs is the list of node URLs from url (which may hold several,
// comma-separated) and more, without blanks and duplicates, in order.
func ServerURLs(url string, more ...string) []string {
	var out []string
	seen := map[string]bool{}
	for _, list := range append([]string{url}, more...) {
		for _, u := range strings.Split(list, ",") {
			if u = strings.TrimSpace(u); u != "" && !seen[u] {
				seen[u] = true
				out = append(out, u)
			}
		}
	}
	return out
}

// URL is the node the client last joined through.
func (c *Client) URL() string {
	c.rs.mu.Lock()
	defer c.rs.mu.Unlock()
	return c.urls[c.urlAt]
}

func (c *Client) nodeIndex() int {
	c.rs.mu.Lock()
	defer c.rs.mu.Unlock()
	return c.urlAt
}

// refusedIndex is the node that last refused a join.
func (c *Client) refusedIndex() int {
	c.rs.mu.Lock()
	defer c.rs.mu.Unlock()
	return c.refusedAt
}

// joinParams is a first join's params.
func (c *Client) joinParams() protocol.JoinParams {
	return protocol.JoinParams{
		Room: c.room, Name: c.opts.Name, Token: c.opts.Token, Metadata: c.opts.Metadata,
		AutoSubscribe: c.opts.AutoSubscribe, AudioMix: c.opts.AudioMix,
	}
}

// joinRetryGap: Dial's wait between two rounds of joins answered 503.
const joinRetryGap = 500 * time.Millisecond

// unavailable reports whether a round of joins met a 503 (try again), and
// no refusal.
func unavailable(err error) bool {
	var e *protocol.Error
	return errors.As(err, &e) && e.Code == protocol.CodeUnavailable
}

// joinAny sends join (a first one, or a resume) through the nodes, from
// urls[from] on in turn, until one answers. A node that cannot be reached,
// drops the socket or fails (5xx, e.g. shutting down) passes the turn; a
// refusal (4xx) is the service's answer and ends the round. Each new
// socket becomes the current one (the old one is closed) before its join,
// so what follows the result arrives on it. The caller sets
// rs.resuming, so that the sockets replaced here are not taken for a drop.
func (c *Client) joinAny(ctx context.Context, from int, params protocol.JoinParams) (protocol.JoinResult, error) {
	var res protocol.JoinResult
	var errs []error
	for i := range c.urls {
		at := (from + i) % len(c.urls)
		url := c.urls[at]
		dctx, cancel := ctx, context.CancelFunc(func() {})
		if len(c.urls) > 1 {
			dctx, cancel = context.WithTimeout(ctx, nodeDialTimeout)
		}
		ws, _, err := c.opts.dialer().DialContext(dctx, url, nil)
		cancel()
		if err != nil {
			errs = append(errs, fmt.Errorf("dial %s: %w", url, err))
			if ctx.Err() != nil {
				break
			}
			continue
		}
		_ = ws.SetCompressionLevel(flate.BestCompression) // no-op without permessage-deflate
		s := newSocket(ws)
		old := c.socket()
		c.setSocket(s)
		if old != nil {
			_ = old.ws.Close()
		}
		c.wg.Add(1)
		go c.readLoop(s)
		jctx, cancel := ctx, context.CancelFunc(func() {})
		if len(c.urls) > 1 || params.Resume != "" {
			jctx, cancel = context.WithTimeout(ctx, nodeJoinTimeout)
		}
		err = c.callOn(jctx, s, protocol.MethodJoin, params, &res)
		cancel()
		if err == nil {
			c.rs.mu.Lock()
			c.urlAt = at
			c.rs.mu.Unlock()
			return res, nil
		}
		_ = ws.Close()
		var refused *protocol.Error
		if errors.As(err, &refused) && refused.Code < 500 {
			c.rs.mu.Lock()
			c.refusedAt = at // a rejoin goes there first: that node answers
			c.rs.mu.Unlock()
			return res, err
		}
		errs = append(errs, fmt.Errorf("join through %s: %w", url, err))
		if ctx.Err() != nil {
			break
		}
	}
	return res, errors.Join(errs...)
}

// serverLeft handles the server's `leave`. A node that shuts down ends
// the session there, but with other nodes to go to (or Rejoin) the client
// carries on elsewhere, starting with the next node; any other reason
// (kicked, duplicate, room closed) ends the session for good.
func (c *Client) serverLeft(raw json.RawMessage) {
	var p protocol.LeaveParams
	_ = json.Unmarshal(raw, &p)
	c.rs.mu.Lock()
	defer c.rs.mu.Unlock()
	if p.Reason == protocol.ReasonServerShutdown && c.opts.AutoResume && (len(c.urls) > 1 || c.opts.Rejoin) {
		c.urlAt = (c.urlAt + 1) % len(c.urls)
		return
	}
	c.rs.ended = true
	c.rs.leftBecause = p.Reason
}

// nodeLeaving handles `reconnect` (a draining cluster node asks the
// client to resume elsewhere; it closes the socket next): the next resume
// starts with the next node, since this one refuses resumes now.
func (c *Client) nodeLeaving() {
	c.rs.mu.Lock()
	defer c.rs.mu.Unlock()
	c.urlAt = (c.urlAt + 1) % len(c.urls)
	c.rs.drained = true
}

// newPeersLocked makes the two peer connections. Call with peerMu held,
// and pubMu unless the client is still being dialled.
func (c *Client) newPeersLocked(ice []webrtc.ICEServer) error {
	cfg := webrtc.Configuration{ICEServers: ice, BundlePolicy: webrtc.BundlePolicyMaxBundle,
		ICETransportPolicy: c.opts.ICETransportPolicy}
	pub, err := c.api.NewPeerConnection(cfg)
	if err != nil {
		return err
	}
	sub, err := c.api.NewPeerConnection(cfg)
	if err != nil {
		_ = pub.Close()
		return err
	}
	c.pub, c.sub = pub, sub
	// Candidates that came before (for these connections, after the join
	// result) wait in the queues; those of the old connections never fit.
	c.cands.init(pub, sub)
	pub.OnICECandidate(func(cand *webrtc.ICECandidate) { c.sendCandidate(protocol.TargetPublisher, cand) })
	sub.OnICECandidate(func(cand *webrtc.ICECandidate) { c.sendCandidate(protocol.TargetSubscriber, cand) })
	sub.OnTrack(c.handleTrack)
	sub.OnDataChannel(func(dc *webrtc.DataChannel) {
		dc.OnMessage(func(m webrtc.DataChannelMessage) {
			var dm protocol.DataMessage
			if json.Unmarshal(m.Data, &dm) == nil {
				c.hmu.Lock()
				f := c.onData
				c.hmu.Unlock()
				if f != nil {
					f(dm)
				}
			}
		})
	})
	return nil
}

// renewLocked replaces both connections by new ones (their peer, the old
// node, is gone). It returns whether the publisher connection had been
// opened. Call with peerMu and pubMu held.
func (c *Client) renewLocked(ice []webrtc.ICEServer) (bool, error) {
	opened := c.pubDC != nil
	c.rs.mu.Lock()
	drained := c.rs.drained
	c.rs.drained = false
	c.rs.mu.Unlock()
	if drained {
		// The draining node still forwards what the old publisher
		// connection sends until the other nodes take the tracks from the
		// new one: keep sending on both meanwhile (drain.go).
		c.keepOld(c.pub, c.sub)
	} else {
		closePeer(c.pub, c.log)
		closePeer(c.sub, c.log)
	}
	c.pubDC = nil
	return opened, c.newPeersLocked(ice)
}

// pubRecord is a track Publish added and the server accepted.
type pubRecord struct {
	local LocalTrack
	track protocol.Track
	tr    *webrtc.RTPTransceiver
}

// Published lists the tracks published now, with their current ids and
// senders: a failover that brought new connections changed them.
func (c *Client) Published() []Published {
	c.pubMu.Lock()
	defer c.pubMu.Unlock()
	out := make([]Published, 0, len(c.published))
	for _, r := range c.published {
		out = append(out, Published{Track: r.track, Sender: r.tr.Sender()})
	}
	return out
}

// republishLocked publishes the recorded tracks again on new connections
// (and the data channel, unless a lazy publisher never opened). Call with
// pubMu held.
func (c *Client) republishLocked(ctx context.Context, opened bool) ([]protocol.Track, error) {
	if !opened && len(c.published) == 0 {
		return nil, nil
	}
	if err := c.addDataChannelLocked(); err != nil {
		return nil, err
	}
	anns := make([]protocol.TrackAnnouncement, 0, len(c.published))
	for i := range c.published {
		r := &c.published[i]
		tr, err := c.attachLocked(r.local)
		if err != nil {
			return nil, err
		}
		r.tr = tr
		r.local.readRTCP(tr.Sender())
		anns = append(anns, r.local.announcement())
	}
	res, err := c.negotiateLocked(ctx, anns)
	if err != nil {
		return nil, err
	}
	byCID := map[string]protocol.Track{}
	for _, t := range res.Tracks {
		byCID[t.CID] = t
	}
	out := make([]protocol.Track, 0, len(c.published))
	c.simMu.Lock()
	defer c.simMu.Unlock()
	for i := range c.published {
		r := &c.published[i]
		t, ok := byCID[r.local.id()]
		if !ok {
			return nil, fmt.Errorf("the server did not take track %s again", r.local.id())
		}
		if r.local.Simulcast != nil {
			delete(c.simulcast, r.track.ID)
			r.local.Simulcast.negotiated(r.tr, t)
			c.simulcast[t.ID] = r.local.Simulcast
		}
		r.track = t
		out = append(out, t)
	}
	return out, nil
}

// failoverLocked finishes a resume or rejoin that brought new connections:
// it replaces them and publishes again. Call with peerMu held; it is
// released once the connections are in place, so the server's subscriber
// offer is answered on the new one.
func (c *Client) failoverLocked(ctx context.Context, res protocol.JoinResult) ([]protocol.Track, error) {
	c.pubMu.Lock()
	defer c.pubMu.Unlock()
	opened, err := c.renewLocked(res.ICEServers)
	c.peerMu.Unlock()
	if err != nil {
		return nil, err
	}
	return c.republishLocked(ctx, opened)
}

// watchSilence makes s's reader give up after Options.ReadTimeout without
// any frame, the server's pings included; it returns that timeout (0 =
// none), which the reader applies to each read. The server pings every
// 10 s: a socket silent for longer leads to a node that is gone without a
// word (a host that lost power or its network), which TCP alone would
// notice only after minutes.
//
// The pong gets the same 10 s to be written as any message (writeTimeout).
// It had 1 s (gorilla's default handler's too): on a CPU-starved machine
// the pong's write came after its deadline, gorilla keeps a failed write's
// error for the socket, and every later request, answer and candidate
// failed at once with "write tcp ...: i/o timeout" while the socket still
// read; the server never got the subscriber's answer (TestSoak under load:
// a subscriber's video never started, its calls failed).
func (c *Client) watchSilence(s *socket) time.Duration {
	timeout := c.opts.readTimeout()
	s.ws.SetPingHandler(func(data string) error {
		if timeout > 0 {
			_ = s.ws.SetReadDeadline(time.Now().Add(timeout))
		}
		err := s.ws.WriteControl(websocket.PongMessage, []byte(data), time.Now().Add(writeTimeout))
		var ne net.Error
		if err == nil || errors.Is(err, websocket.ErrCloseSent) || (errors.As(err, &ne) && ne.Timeout()) {
			return nil // a lost pong is not worth ending the session for
		}
		return err
	})
	return timeout
}
