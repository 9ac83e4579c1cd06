// Package client is Starling's Go client: it joins a room over the
// WebSocket signaling protocol and runs the publisher and subscriber peer
// connections with pion. Tests, the load generator and bots use it.
package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
	"github.com/pion/webrtc/v4"
	"github.com/starling-rtc/starling/signaling/protocol"
)

// Options configure a client.
type Options struct {
	Name          string
	Token         string
	Metadata      string
	AutoSubscribe *bool       // nil = server default (true)
	API           *webrtc.API // nil = NewAPI()
	Logger        *slog.Logger
}

// Event is a server notification, kept in order of arrival.
type Event struct {
	Method string
	Params json.RawMessage
}

// RemoteTrack is a track received on the subscriber connection.
type RemoteTrack struct {
	ParticipantID string
	TrackID       string
	Track         *webrtc.TrackRemote
	Receiver      *webrtc.RTPReceiver
}

// Client is one joined participant.
type Client struct {
	ws   *websocket.Conn
	wmu  sync.Mutex
	log  *slog.Logger
	next atomic.Int64

	pmu     sync.Mutex
	pending map[string]chan *protocol.Message

	Join protocol.JoinResult // the join result

	pub, sub *webrtc.PeerConnection
	pubDC    *webrtc.DataChannel
	pubMu    sync.Mutex // serialises publisher negotiation
	cands    candidateQueues

	emu    sync.Mutex
	econd  *sync.Cond
	events []Event

	onTrack func(*RemoteTrack)
	onData  func(protocol.DataMessage)
	hmu     sync.Mutex

	simMu     sync.Mutex
	simulcast map[string]*SimulcastTrack // by server track id

	offers chan string
	done   chan struct{}
	closed atomic.Bool
	wg     sync.WaitGroup
	err    error
}

// NewAPI returns a pion API with default codecs and interceptors, allowing
// loopback candidates (tests and local bots).
func NewAPI() (*webrtc.API, error) {
	return buildAPI(nil)
}

// Dial connects to url (ws://host:port/v1/rtc), joins room and negotiates
// the publisher connection's data channel.
func Dial(ctx context.Context, url, room string, opts Options) (*Client, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	api := opts.API
	if api == nil {
		var err error
		if api, err = NewAPI(); err != nil {
			return nil, err
		}
	}
	ws, _, err := websocket.DefaultDialer.DialContext(ctx, url, nil)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", url, err)
	}
	c := &Client{
		ws: ws, log: opts.Logger, pending: map[string]chan *protocol.Message{},
		offers: make(chan string, 16), done: make(chan struct{}), simulcast: map[string]*SimulcastTrack{},
	}
	c.econd = sync.NewCond(&c.emu)
	c.wg.Add(1)
	go c.readLoop()

	var res protocol.JoinResult
	if err := c.Call(ctx, protocol.MethodJoin, protocol.JoinParams{
		Room: room, Name: opts.Name, Token: opts.Token, Metadata: opts.Metadata, AutoSubscribe: opts.AutoSubscribe,
	}, &res); err != nil {
		c.Close()
		return nil, err
	}
	c.Join = res
	cfg := webrtc.Configuration{ICEServers: res.ICEServers, BundlePolicy: webrtc.BundlePolicyMaxBundle}
	if c.pub, err = api.NewPeerConnection(cfg); err == nil {
		c.sub, err = api.NewPeerConnection(cfg)
	}
	if err != nil {
		c.Close()
		return nil, err
	}
	c.cands.init(c.pub, c.sub)
	c.pub.OnICECandidate(func(cand *webrtc.ICECandidate) { c.sendCandidate(protocol.TargetPublisher, cand) })
	c.sub.OnICECandidate(func(cand *webrtc.ICECandidate) { c.sendCandidate(protocol.TargetSubscriber, cand) })
	c.sub.OnTrack(c.handleTrack)
	c.sub.OnDataChannel(func(dc *webrtc.DataChannel) {
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
	c.wg.Add(1)
	go c.answerLoop()
	if c.pubDC, err = c.pub.CreateDataChannel(protocol.DataChannelLabel, nil); err != nil {
		c.Close()
		return nil, err
	}
	if _, err := c.negotiate(ctx, nil); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// ParticipantID is this client's participant id.
func (c *Client) ParticipantID() string { return c.Join.Participant.ID }

// Publisher and Subscriber expose the two peer connections.
func (c *Client) Publisher() *webrtc.PeerConnection  { return c.pub }
func (c *Client) Subscriber() *webrtc.PeerConnection { return c.sub }

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
	for c.pubDC.ReadyState() != webrtc.DataChannelStateOpen {
		select {
		case <-ctx.Done():
			return fmt.Errorf("data channel not open: %w", ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
	return c.pubDC.SendText(text)
}

// Call sends a request and decodes its result into result (may be nil).
// A server error is returned as *protocol.Error.
func (c *Client) Call(ctx context.Context, method string, params, result any) error {
	id := strconv.FormatInt(c.next.Add(1), 10)
	ch := make(chan *protocol.Message, 1)
	c.pmu.Lock()
	c.pending[id] = ch
	c.pmu.Unlock()
	defer func() {
		c.pmu.Lock()
		delete(c.pending, id)
		c.pmu.Unlock()
	}()
	raw, err := json.Marshal(params)
	if err != nil {
		return err
	}
	if err := c.write(protocol.Message{JSONRPC: "2.0", ID: json.RawMessage(strconv.Quote(id)), Method: method, Params: raw}); err != nil {
		return err
	}
	select {
	case m := <-ch:
		if m.Error != nil {
			return m.Error
		}
		if result != nil && len(m.Result) > 0 {
			return json.Unmarshal(m.Result, result)
		}
		return nil
	case <-c.done:
		return errors.New("connection closed")
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Notify sends a notification.
func (c *Client) Notify(method string, params any) error {
	raw, err := json.Marshal(params)
	if err != nil {
		return err
	}
	return c.write(protocol.Message{JSONRPC: "2.0", Method: method, Params: raw})
}

func (c *Client) write(m protocol.Message) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_ = c.ws.SetWriteDeadline(time.Now().Add(10 * time.Second))
	return c.ws.WriteJSON(m)
}

// readLoop routes responses to callers, handles offers and candidates, and
// records every other notification as an Event.
func (c *Client) readLoop() {
	defer c.wg.Done()
	defer close(c.done)
	for {
		var m protocol.Message
		if err := c.ws.ReadJSON(&m); err != nil {
			c.err = err
			return
		}
		if m.Method == "" {
			c.pmu.Lock()
			ch := c.pending[idString(m.ID)]
			c.pmu.Unlock()
			if ch != nil {
				ch <- &m
			} else if m.Error != nil {
				c.record(Event{Method: "error", Params: mustJSON(m.Error)})
			}
			continue
		}
		switch m.Method {
		case protocol.MethodOffer:
			var p protocol.SDPParams
			if json.Unmarshal(m.Params, &p) == nil {
				select {
				case c.offers <- p.SDP:
				case <-c.closing():
				}
			}
		case protocol.MethodCandidate:
			var p protocol.CandidateParams
			if json.Unmarshal(m.Params, &p) == nil {
				c.cands.add(p)
			}
		case protocol.NotifyPublishLayers:
			c.handlePublishLayers(m.Params)
		}
		c.record(Event{Method: m.Method, Params: m.Params})
	}
}

func (c *Client) closing() <-chan struct{} {
	if c.closed.Load() {
		ch := make(chan struct{})
		close(ch)
		return ch
	}
	return nil
}

// answerLoop answers subscriber offers in order.
func (c *Client) answerLoop() {
	defer c.wg.Done()
	for {
		select {
		case <-c.done:
			return
		case sdp := <-c.offers:
			if err := c.answer(sdp); err != nil {
				c.log.Warn("answering subscriber offer", "err", err)
			}
		}
	}
}

func (c *Client) answer(sdp string) error {
	if err := c.sub.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: sdp}); err != nil {
		return err
	}
	c.cands.flush(protocol.TargetSubscriber)
	ans, err := c.sub.CreateAnswer(nil)
	if err != nil {
		return err
	}
	if err := c.sub.SetLocalDescription(ans); err != nil {
		return err
	}
	return c.Notify(protocol.MethodAnswer, protocol.SDPParams{SDP: c.sub.LocalDescription().SDP})
}

func (c *Client) handleTrack(t *webrtc.TrackRemote, r *webrtc.RTPReceiver) {
	c.hmu.Lock()
	f := c.onTrack
	c.hmu.Unlock()
	if f == nil {
		go drain(t)
		return
	}
	f(&RemoteTrack{ParticipantID: t.StreamID(), TrackID: t.ID(), Track: t, Receiver: r})
}

// drain reads a track nobody asked for, so its buffers never fill.
func drain(t *webrtc.TrackRemote) {
	buf := make([]byte, 1500)
	for {
		if _, _, err := t.Read(buf); err != nil {
			return
		}
	}
}

func (c *Client) sendCandidate(target string, cand *webrtc.ICECandidate) {
	p := protocol.CandidateParams{Target: target}
	if cand != nil {
		init := cand.ToJSON()
		p.Candidate = &init
	}
	if !c.closed.Load() {
		_ = c.Notify(protocol.MethodCandidate, p)
	}
}

func (c *Client) record(e Event) {
	c.emu.Lock()
	c.events = append(c.events, e)
	c.emu.Unlock()
	c.econd.Broadcast()
}

// Events returns a copy of the notifications received so far.
func (c *Client) Events() []Event {
	c.emu.Lock()
	defer c.emu.Unlock()
	return append([]Event(nil), c.events...)
}

// WaitEvent waits for the first notification, since the start, for which
// match returns true (match may be nil to accept any of method).
func (c *Client) WaitEvent(ctx context.Context, method string, match func(json.RawMessage) bool) (Event, error) {
	stop := context.AfterFunc(ctx, func() { c.emu.Lock(); c.econd.Broadcast(); c.emu.Unlock() })
	defer stop()
	c.emu.Lock()
	defer c.emu.Unlock()
	i := 0
	for {
		for ; i < len(c.events); i++ {
			e := c.events[i]
			if e.Method == method && (match == nil || match(e.Params)) {
				return e, nil
			}
		}
		if ctx.Err() != nil {
			return Event{}, fmt.Errorf("waiting for %s: %w", method, ctx.Err())
		}
		c.econd.Wait()
	}
}

// Leave sends `leave` and closes everything.
func (c *Client) Leave(ctx context.Context) error {
	err := c.Call(ctx, protocol.MethodLeave, protocol.Empty{}, nil)
	c.Close()
	return err
}

// Close closes the socket and both connections without `leave`.
func (c *Client) Close() {
	if c.closed.Swap(true) {
		return
	}
	_ = c.ws.Close()
	if c.pub != nil {
		_ = c.pub.Close()
	}
	if c.sub != nil {
		_ = c.sub.Close()
	}
	c.wg.Wait()
}

// Done is closed when the signaling socket is gone.
func (c *Client) Done() <-chan struct{} { return c.done }

func idString(raw json.RawMessage) string {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	return string(raw)
}

func mustJSON(v any) json.RawMessage {
	b, _ := json.Marshal(v)
	return b
}
