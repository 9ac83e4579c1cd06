package client

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"
	"github.com/pion/webrtc/v4"
	"github.com/starling-rtc/starling/protocol"
)

// Events the client records itself (see Events and WaitEvent), next to the
// server's notifications, so callers can follow a reconnection.
const (
	// EventDisconnected: the signaling socket dropped without the server
	// ending the session. Params: {"error": "..."}.
	EventDisconnected = "client.disconnected"
	// EventResumed: the session was resumed on a new socket and the
	// publisher connection restarted ICE. Params: the join result of the
	// resume (the room as it is now, the new resume token).
	EventResumed = "client.resumed"
	// EventResumeFailed: automatic resume gave up; the session is over.
	// Params: {"error": "..."}.
	EventResumeFailed = "client.resumeFailed"
)

// DefaultResumeWindow is how long AutoResume keeps trying by default: the
// server's default window (docs/PROTOCOL.md "Resume").
const DefaultResumeWindow = 30 * time.Second

// testHooks let the package's tests order the steps of a resume against
// the socket readers (export_test.go); nil outside tests.
type testHooks struct {
	beforeResumed func()                       // an attempt succeeded, before it is settled
	attemptFailed func(error)                  // autoResume: an attempt failed, before the backoff
	socketLost    func(s *socket, lost func()) // a reader ended: the hook calls lost
}

// socket is one signaling WebSocket and the outcome of its reader.
type socket struct {
	ws      *websocket.Conn
	done    chan struct{} // closed when its reader stops
	err     error         // why it stopped; set before done closes
	handled bool          // its loss was acted on; guarded by resumeState.mu
}

func newSocket(ws *websocket.Conn) *socket {
	return &socket{ws: ws, done: make(chan struct{})}
}

// resumeState is what resuming needs across sockets.
type resumeState struct {
	run sync.Mutex // one resume at a time

	mu    sync.Mutex // guards the fields below and Client.done
	smu   sync.Mutex // guards Client.sock (taken inside mu, never around it)
	token string
	last  protocol.JoinResult
	ended bool // the server sent `leave`: nothing to resume
	// leftBecause: the reason of the server's `leave`, "" if none came;
	// the errors of calls made after it name it (rpc.go).
	leftBecause string
	resuming    bool // a resume is under way: it handles the sockets it replaces
	// drained: the node asked the client to move (`reconnect`): the next
	// failover keeps the old connections until that node lets go of them
	// (make-before-break, drain.go).
	drained bool

	ctx    context.Context // cancelled by Close, to stop a resume under way
	cancel context.CancelFunc
}

func (r *resumeState) joined(res protocol.JoinResult) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.token = res.ResumeToken
	r.last = res
}

// LastJoin is the latest join result: that of the last resume, if any.
func (c *Client) LastJoin() protocol.JoinResult {
	c.rs.mu.Lock()
	defer c.rs.mu.Unlock()
	return c.rs.last
}

// ResumeToken is the token the next resume will use.
func (c *Client) ResumeToken() string {
	c.rs.mu.Lock()
	defer c.rs.mu.Unlock()
	return c.rs.token
}

// socket is the current signaling socket.
func (c *Client) socket() *socket {
	c.rs.smu.Lock()
	defer c.rs.smu.Unlock()
	return c.sock
}

func (c *Client) setSocket(s *socket) {
	c.rs.smu.Lock()
	defer c.rs.smu.Unlock()
	c.sock = s
}

// CloseSignaling drops the signaling socket at once, without `leave` and
// without a close handshake, as a network failure would; the peer
// connections stay. With AutoResume the client then resumes.
func (c *Client) CloseSignaling() {
	_ = c.socket().ws.NetConn().Close()
}

// socketLost runs on s's reader once s is gone.
func (c *Client) socketLost(s *socket) {
	c.rs.mu.Lock()
	if c.rs.resuming || s.handled || c.socket() != s {
		// A resume under way deals with it, or one already replaced it.
		c.rs.mu.Unlock()
		return
	}
	s.handled = true
	ended := c.rs.ended
	c.rs.mu.Unlock()
	if c.closed.Load() {
		c.endSession()
		return
	}
	if !ended {
		c.record(Event{Method: EventDisconnected, Params: mustJSON(map[string]string{"error": errText(s.err)})})
	}
	if c.opts.AutoResume && !ended {
		c.wg.Add(1) // the caller's reader still counts, so this cannot race Close's Wait
		go c.autoResume(s)
		return
	}
	c.endSession()
}

// endSession closes Done.
func (c *Client) endSession() {
	c.rs.mu.Lock()
	defer c.rs.mu.Unlock()
	select {
	case <-c.done:
	default:
		close(c.done)
	}
}

var errStale = errors.New("already resumed on another socket")

// autoResume resumes after lost dropped, retrying until the window ends
// or the server refuses.
func (c *Client) autoResume(lost *socket) {
	defer c.wg.Done()
	window := c.opts.ResumeWindow
	if window <= 0 {
		window = DefaultResumeWindow
	}
	ctx, cancel := context.WithTimeout(c.rs.ctx, window)
	defer cancel()
	backoff := 50 * time.Millisecond
	for {
		err := c.resume(ctx, lost)
		if err == nil || errors.Is(err, errStale) {
			return
		}
		c.log.Info("resume attempt failed", "err", err)
		// A refusal (4xx: unknown session, ended, bad token) is final; a
		// node failing (5xx, e.g. a cluster that is reorganising after a
		// node left) is tried again.
		var refused *protocol.Error
		if c.closed.Load() || (errors.As(err, &refused) && refused.Code < 500) || ctx.Err() != nil {
			if !c.closed.Load() {
				c.record(Event{Method: EventResumeFailed, Params: mustJSON(map[string]string{"error": err.Error()})})
			}
			c.endSession()
			return
		}
		// The socket the failed attempt left, taken now: read after the
		// backoff, it was whatever another resume had put in its place
		// meanwhile, and this loop resumed a healthy session again.
		lost = c.socket()
		if h := c.hooks.Load(); h != nil && h.attemptFailed != nil {
			h.attemptFailed(err)
		}
		select {
		case <-time.After(backoff):
		case <-ctx.Done():
		}
		backoff = min(2*backoff, time.Second)
	}
}

// Resume reconnects signaling and resumes the session (docs/PROTOCOL.md
// "Resume"): it dials a new socket, sends `join` with the resume token,
// then restarts ICE on the publisher connection; the server's ICE-restart
// offer for the subscriber connection is answered as it comes. The
// participant id, published tracks and subscriptions stay the same.
//
// Call it when the socket dropped (Done closed, without AutoResume), or
// when the network changed: a socket that still looks alive is closed
// first. On failure the session is over (Done closes); Resume may be
// tried again while the server's window lasts. A server refusal is
// returned as *protocol.Error (404 once the window is over).
func (c *Client) Resume(ctx context.Context) error {
	err := c.resume(ctx, nil)
	if err != nil {
		c.endSession()
	}
	return err
}

// resume does one attempt; lost, when set, is the socket whose loss it
// answers (if another resume replaced it meanwhile, errStale). It goes
// through the nodes in turn (failover.go) and, with Options.Rejoin, joins
// afresh when the session is unknown.
func (c *Client) resume(ctx context.Context, lost *socket) error {
	c.rs.run.Lock()
	defer c.rs.run.Unlock()
	if c.closed.Load() {
		return errors.New("client closed")
	}
	old := c.socket()
	c.rs.mu.Lock()
	if lost != nil && old != lost {
		c.rs.mu.Unlock()
		return errStale
	}
	if c.rs.ended {
		c.rs.mu.Unlock()
		return errEnded
	}
	token := c.rs.token
	c.rs.resuming = true
	c.rs.mu.Unlock()

	ev, err := c.resumeOn(ctx, token)
	if err == nil {
		if h := c.hooks.Load(); h != nil && h.beforeResumed != nil {
			h.beforeResumed()
		}
	}
	// Settle under rs.mu, where the reader decides whether a lost socket is
	// its business (socketLost): while resuming, each loss is this
	// attempt's. So the outcome is checked and reported in one step: a
	// session the server ended (`leave`) or a socket that dropped during
	// the attempt fails it, and only an attempt that holds a live socket of
	// a live session reports EventResumed (or EventRejoined). The event
	// used to be recorded first and the socket checked after: an attempt
	// whose socket had dropped, or whose session the server had just
	// ended, reported a resume; the session was gone.
	c.rs.mu.Lock()
	defer c.rs.mu.Unlock()
	c.rs.resuming = false
	s := c.socket()
	if err == nil {
		switch {
		case c.rs.ended:
			err = errEnded
		case isClosed(s.done):
			err = errors.New("resume: the new socket dropped")
		default:
			c.record(ev)
			return nil
		}
	}
	if s != old {
		// This attempt's own socket, closed or refused: the caller retries
		// or gives up. Its reader, ending now or later, must not take it
		// for a new loss (it started a second resume loop, which resumed
		// again from the socket the first had just brought up).
		s.handled = true
	}
	return err
}

// errEnded: the server ended the session (`leave`): nothing to resume.
var errEnded = protocol.Errorf(protocol.CodeConflict, "resume: the server ended the session")

// resumeOn sends the resume (or, with Options.Rejoin, a fresh join) and
// restarts or renews the connections; it returns the event that reports
// it, recorded by resume once the outcome is settled.
func (c *Client) resumeOn(ctx context.Context, token string) (Event, error) {
	// Until it is known whether the connections stay, the server's next
	// subscriber offer waits (answer takes peerMu).
	c.peerMu.Lock()
	locked := true
	defer func() {
		if locked {
			c.peerMu.Unlock()
		}
	}()
	res, err := c.joinAny(ctx, c.nodeIndex(), protocol.JoinParams{Room: c.room, Resume: token, Subscriptions: c.subs.snapshot()})
	rejoined, why := false, ""
	var refused *protocol.Error
	if err != nil && c.opts.Rejoin && errors.As(err, &refused) && refused.Code == protocol.CodeNotFound {
		c.log.Info("resume refused: joining afresh", "err", err)
		why = err.Error()
		res, err = c.joinAny(ctx, c.refusedIndex(), c.joinParams())
		rejoined = err == nil
		if rejoined {
			c.subs.reset() // a new participant: nothing asked of its subscriptions yet
		}
	}
	if err != nil {
		return Event{}, err
	}
	c.rs.joined(res)
	c.rs.mu.Lock()
	restartAnswers := isClosed(c.done)
	if restartAnswers { // the session had ended: this is a new one
		c.done = make(chan struct{})
	}
	done := c.done
	c.rs.mu.Unlock()
	if restartAnswers {
		c.wg.Add(1)
		go c.answerLoop(done)
	}
	if rejoined || res.NewConnections {
		locked = false // failoverLocked unlocks it
		tracks, err := c.failoverLocked(ctx, res)
		if err != nil {
			_ = c.socket().ws.Close()
			return Event{}, fmt.Errorf("failover: new connections: %w", err)
		}
		if rejoined {
			return Event{Method: EventRejoined, Params: mustJSON(Rejoined{Join: res, Tracks: tracks, Reason: why})}, nil
		}
	} else {
		locked = false
		c.peerMu.Unlock()
		if err := c.restartPublisher(ctx); err != nil {
			_ = c.socket().ws.Close()
			return Event{}, fmt.Errorf("resume: publisher ICE restart: %w", err)
		}
	}
	return Event{Method: EventResumed, Params: mustJSON(res)}, nil
}

// restartPublisher restarts ICE on the publisher connection: a new offer
// with new ICE credentials, answered by the server as usual. Its own
// candidates wait until the answer is applied, so the server never sees
// one of the new ICE session before the offer that starts it.
func (c *Client) restartPublisher(ctx context.Context) error {
	c.pubMu.Lock()
	defer c.pubMu.Unlock()
	if c.pubDC == nil {
		return nil // a lazy publisher never opened: nothing to restart
	}
	if c.pub.SignalingState() == webrtc.SignalingStateHaveLocalOffer {
		// Its answer was lost with the old socket, and pion cannot replace
		// a pending local offer: send it again first.
		if err := c.exchangeOffer(ctx, c.pub.PendingLocalDescription().SDP); err != nil {
			return err
		}
	}
	if c.pub.ICEConnectionState() == webrtc.ICEConnectionStateNew {
		// ICE has not started (the answer just applied was the first):
		// it starts with fresh candidates, and a restart now would race
		// pion's start of the transports (which runs in the background
		// and applies the first answer's credentials over the restart's).
		return nil
	}
	c.gate.hold(protocol.TargetPublisher)
	defer c.gate.release(protocol.TargetPublisher, c.notifyCandidate)
	offer, err := c.pub.CreateOffer(&webrtc.OfferOptions{ICERestart: true})
	if err != nil {
		return err
	}
	if err := c.pub.SetLocalDescription(offer); err != nil {
		return err
	}
	return c.exchangeOffer(ctx, c.pub.LocalDescription().SDP)
}

// exchangeOffer sends a publisher offer that announces no new tracks and
// applies the answer.
func (c *Client) exchangeOffer(ctx context.Context, sdp string) error {
	var res protocol.OfferResult
	if err := c.Call(ctx, protocol.MethodOffer, protocol.OfferParams{SDP: sdp, Tracks: []protocol.TrackAnnouncement{}}, &res); err != nil {
		return err
	}
	if err := c.pub.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: res.SDP}); err != nil {
		return err
	}
	c.cands.flush(protocol.TargetPublisher)
	return nil
}

// candidateGate holds a connection's own candidates while its description
// is being exchanged.
type candidateGate struct {
	mu    sync.Mutex
	on    map[string]bool
	queue map[string][]protocol.CandidateParams
}

func (g *candidateGate) hold(target string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.on == nil {
		g.on, g.queue = map[string]bool{}, map[string][]protocol.CandidateParams{}
	}
	g.on[target] = true
}

// held keeps p if its connection is held, and reports whether it did.
func (g *candidateGate) held(p protocol.CandidateParams) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.on[p.Target] {
		return false
	}
	g.queue[p.Target] = append(g.queue[p.Target], p)
	return true
}

func (g *candidateGate) release(target string, send func(protocol.CandidateParams)) {
	g.mu.Lock()
	q := g.queue[target]
	delete(g.queue, target)
	delete(g.on, target)
	g.mu.Unlock()
	for _, p := range q {
		send(p)
	}
}

// candidateUfrag is the ICE username fragment a remote candidate belongs
// to, "" when it does not say.
func candidateUfrag(c webrtc.ICECandidateInit) string {
	if c.UsernameFragment != nil && *c.UsernameFragment != "" {
		return *c.UsernameFragment
	}
	f := strings.Fields(c.Candidate)
	for i := 0; i+1 < len(f); i++ {
		if f[i] == "ufrag" {
			return f[i+1]
		}
	}
	return ""
}

// fitsRemote reports whether a remote candidate belongs to the ICE session
// of pc's remote description. One of a restarted session can arrive before
// the description that starts it, and pion drops it if added then.
func fitsRemote(pc *webrtc.PeerConnection, c webrtc.ICECandidateInit) bool {
	rd := pc.RemoteDescription()
	if rd == nil {
		return false
	}
	u := candidateUfrag(c)
	return u == "" || strings.Contains(rd.SDP, "a=ice-ufrag:"+u+"\r\n") || strings.Contains(rd.SDP, "a=ice-ufrag:"+u+"\n")
}

func isClosed(ch chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
