// Package client is Starling's Go client: it joins a room over the
// WebSocket signaling protocol and runs the publisher and subscriber peer
// connections with pion. Tests, the load generator and bots use it.
package client

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/webrtc/v4"
	"github.com/starling-rtc/starling/protocol"
)

// RemoteTrack is a track received on the subscriber connection. The client
// reads the receiver's RTCP itself: pion's interceptors only see sender
// reports that are read, and without that the receiver reports sent back
// to the server carry no round-trip fields.
type RemoteTrack struct {
	ParticipantID string
	TrackID       string
	Track         *webrtc.TrackRemote
	Receiver      *webrtc.RTPReceiver
}

// Client is one joined participant.
type Client struct {
	msgsOut, msgsIn atomic.Uint64
	wmu             sync.Mutex // serialises writes
	sock            *socket    // the current signaling socket; guarded by rs.smu (see resume.go)
	log             *slog.Logger
	next            atomic.Int64
	urls            []string // the nodes, in the order tried (see failover.go)
	urlAt           int      // index in urls of the node last joined; guarded by rs.mu
	refusedAt       int      // index in urls of the node that last refused a join; guarded by rs.mu
	room            string
	opts            Options
	api             *webrtc.API

	pmu     sync.Mutex
	pending map[string]chan *protocol.Message

	Join protocol.JoinResult // the first join result; LastJoin has the latest after resumes

	// pub and sub are replaced when a failover brings new connections;
	// that takes peerMu, and pubMu for pub (see failover.go).
	pub, sub  *webrtc.PeerConnection
	peerMu    sync.Mutex
	pubDC     *webrtc.DataChannel
	pubMu     sync.Mutex  // serialises publisher negotiation
	published []pubRecord // what Publish added, to publish again on new connections; guarded by pubMu
	cands     candidateQueues

	emu    sync.Mutex
	econd  *sync.Cond
	events []Event

	onTrack func(*RemoteTrack)
	onData  func(protocol.DataMessage)
	hmu     sync.Mutex

	simMu     sync.Mutex
	simulcast map[string]*SimulcastTrack // by server track id

	offers chan offer
	done   chan struct{} // the session is over; guarded by rs.mu (see resume.go)
	closed atomic.Bool
	wg     sync.WaitGroup
	rs     resumeState // see resume.go
	hooks  atomic.Pointer[testHooks]
	old    oldPeers // a drained node's connections, kept for a while (drain.go)
	gate   candidateGate
	subs   subscriptionLog // see subscriptions.go
}

// NewAPI returns a pion API with default codecs and interceptors (pion's,
// with the client's own TWCC feedback: twcc.go), allowing
// loopback candidates (tests and local bots).
func NewAPI() (*webrtc.API, error) {
	return buildAPI(nil, nil)
}

// Dial connects to url (ws://host:port/v1/rtc), joins room and negotiates
// the publisher connection's data channel. url may list several nodes,
// comma-separated, and Options.URLs adds more: they are tried in order
// until one takes the join (see failover.go).
func Dial(ctx context.Context, url, room string, opts Options) (*Client, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Rejoin {
		opts.AutoResume = true
	}
	urls := ServerURLs(url, opts.URLs...)
	if len(urls) == 0 {
		return nil, errors.New("dial: no server URL")
	}
	api := opts.API
	if api == nil {
		var err error
		if api, err = NewAPI(); err != nil {
			return nil, err
		}
	}
	c := &Client{
		log: opts.Logger, pending: map[string]chan *protocol.Message{}, urls: urls, room: room, opts: opts, api: api,
		offers: make(chan offer, 16), done: make(chan struct{}), simulcast: map[string]*SimulcastTrack{},
	}
	c.econd = sync.NewCond(&c.emu)
	c.rs.ctx, c.rs.cancel = context.WithCancel(context.Background())
	c.peerMu.Lock()      // the first subscriber offer waits for the connections
	c.rs.resuming = true // sockets of nodes that fail are not a lost session
	res, err := c.joinAny(ctx, 0, c.joinParams())
	for err != nil && unavailable(err) && ctx.Err() == nil {
		// 503 is "try again shortly" (a clustered node whose room state
		// store is electing a leader, or slow on a loaded machine).
		select {
		case <-ctx.Done():
		case <-time.After(joinRetryGap):
			res, err = c.joinAny(ctx, 0, c.joinParams())
		}
	}
	c.rs.mu.Lock()
	c.rs.resuming = false
	if s := c.socket(); err == nil && isClosed(s.done) && !s.handled {
		s.handled = true
		err = errors.New("connection closed")
	}
	c.rs.mu.Unlock()
	if err != nil {
		c.peerMu.Unlock()
		c.Close()
		return nil, err
	}
	c.Join = res
	c.rs.joined(res)
	err = c.newPeersLocked(res.ICEServers)
	c.peerMu.Unlock()
	if err != nil {
		c.Close()
		return nil, err
	}
	c.wg.Add(1)
	go c.answerLoop(c.done)
	if opts.LazyPublisher {
		return c, nil
	}
	if _, err := c.dataChannel(ctx); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// dataChannel returns the publisher's data channel, opening the publisher
// connection with it first if that has not happened yet.
func (c *Client) dataChannel(ctx context.Context) (*webrtc.DataChannel, error) {
	c.pubMu.Lock()
	defer c.pubMu.Unlock()
	if c.pubDC != nil {
		return c.pubDC, nil
	}
	if err := c.addDataChannelLocked(); err != nil {
		return nil, err
	}
	if _, err := c.negotiateLocked(ctx, nil); err != nil {
		return nil, err
	}
	return c.pubDC, nil
}

// addDataChannelLocked adds the data channel to the publisher connection's
// next offer, once. Call with pubMu held.
func (c *Client) addDataChannelLocked() error {
	if c.pubDC != nil {
		return nil
	}
	dc, err := c.pub.CreateDataChannel(protocol.DataChannelLabel, nil)
	if err != nil {
		return err
	}
	c.pubDC = dc
	return nil
}

// ParticipantID is this client's participant id.
// After a rejoin it is the new participant's.
func (c *Client) ParticipantID() string { return c.LastJoin().Participant.ID }

// Publisher and Subscriber expose the two peer connections; a failover
// that brings new connections (EventRejoined, or EventResumed through
// another node) replaces them.
func (c *Client) Publisher() *webrtc.PeerConnection {
	c.peerMu.Lock()
	defer c.peerMu.Unlock()
	return c.pub
}

func (c *Client) Subscriber() *webrtc.PeerConnection {
	c.peerMu.Lock()
	defer c.peerMu.Unlock()
	return c.sub
}

// OnTrack sets the callback for remote tracks.
func (c *Client) OnTrack(f func(*RemoteTrack)) {
	c.hmu.Lock()
	c.onTrack = f
	c.hmu.Unlock()
}

// OnData sets the callback for data messages from other participants.
func (c *Client) OnData(f func(protocol.DataMessage)) {
	c.hmu.Lock()
	c.onData = f
	c.hmu.Unlock()
}

// SendData sends a text message to every other participant.
func (c *Client) SendData(ctx context.Context, text string) error {
	dc, err := c.dataChannel(ctx)
	if err != nil {
		return err
	}
	for dc.ReadyState() != webrtc.DataChannelStateOpen {
		select {
		case <-ctx.Done():
			return fmt.Errorf("data channel not open: %w", ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
	return dc.SendText(text)
}

// Leave sends `leave` and closes everything.
func (c *Client) Leave(ctx context.Context) error {
	// The server closes the socket right after its answer, and the reader
	// may see that before Close below marks the client closed: with
	// AutoResume it took the close for a drop and resumed a session that
	// had just ended (a 404, or worse, a resume racing the leave).
	c.rs.mu.Lock()
	c.rs.ended = true
	c.rs.mu.Unlock()
	err := c.Call(ctx, protocol.MethodLeave, protocol.Empty{}, nil)
	c.Close()
	return err
}

// Close closes the socket and both connections without `leave`.
func (c *Client) Close() {
	if c.closed.Swap(true) {
		return
	}
	c.rs.cancel() // stops a resume under way
	if s := c.socket(); s != nil {
		_ = s.ws.Close()
	}
	c.peerMu.Lock()
	pub, sub := c.pub, c.sub
	c.peerMu.Unlock()
	closePeer(pub, c.log)
	closePeer(sub, c.log)
	c.dropOld(nil)
	c.wg.Wait()
}

// Done is closed when the session is over: the signaling socket is gone
// and no resume follows (Options.AutoResume off, or it failed), or Close
// was called. A later successful Resume starts a new session with a new
// Done channel.
func (c *Client) Done() <-chan struct{} {
	c.rs.mu.Lock()
	defer c.rs.mu.Unlock()
	return c.done
}
