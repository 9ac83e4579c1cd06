package signaling

import (
	"encoding/json"
	"log/slog"
	"strings"
	"sync"
	"unicode"
	"unicode/utf8"

	"github.com/starling-rtc/starling/protocol"
	"github.com/starling-rtc/starling/room"
)

// Limits on join fields, so one client cannot bloat every other's state.
const (
	maxRoomName = 128
	maxName     = 256
	maxMetadata = 16 << 10
)

// Session is one client's signaling session: it decodes and validates
// requests and drives the client's room.Participant. It implements
// Dispatcher for its Conn and room.Peer for its participant.
type Session struct {
	conn *Conn
	mgr  *room.Manager
	log  *slog.Logger
	opts SessionOptions // see session_auth.go

	mu    sync.Mutex
	p     *room.Participant
	after func() // runs once the current response is queued

	// While a join or resume is answered, notifications for the client
	// wait until its result is queued (docs/PROTOCOL.md "Order after
	// join"): the room tells the new participant things (another's track,
	// a speaker list) from the moment it is in, before the result is out.
	nmu     sync.Mutex
	holding bool
	held    []heldNote
	// endAfter is the reason of an End that came while a join or resume
	// was answered: its leave waits in held, and AfterResponse closes the
	// socket once the result is out ("" when none).
	endAfter string
	// over: End sent (or queued) the leave; the client hears nothing
	// after it (the subscriber loop may still have an offer to send).
	over bool
}

// heldNote is a notification kept back until the join result is out.
type heldNote struct {
	method string
	params json.RawMessage
}

// maxHeld bounds the notifications kept back: the window is the time
// between the participant's admission and its result being queued.
const maxHeld = 1024

// NewSession makes the session of one socket.
func NewSession(c *Conn, mgr *room.Manager, log *slog.Logger) *Session {
	return &Session{conn: c, mgr: mgr, log: log.With("remote", c.RemoteAddr())}
}

func (s *Session) participant() *room.Participant {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.p
}

// Request handles one client request.
func (s *Session) Request(method string, params json.RawMessage) (any, *protocol.Error) {
	switch method {
	case protocol.MethodJoin:
		return s.join(params)
	case protocol.MethodPing:
		return protocol.Empty{}, nil
	}
	handler, known := joinedMethods[method]
	if !known {
		return nil, protocol.Errorf(protocol.CodeMethodNotFound, "unknown method %q", method)
	}
	p := s.participant()
	if p == nil {
		return nil, protocol.Errorf(protocol.CodeConflict, "%s: join first", method)
	}
	return handler(s, p, params)
}

// Notification handles one client notification.
func (s *Session) Notification(method string, params json.RawMessage) *protocol.Error {
	switch method {
	case protocol.MethodAnswer, protocol.MethodCandidate:
	case protocol.MethodPing:
		return nil
	default:
		if _, known := joinedMethods[method]; known || method == protocol.MethodJoin {
			return protocol.Errorf(protocol.CodeInvalidRequest, "%s is a request: it needs an id", method)
		}
		return protocol.Errorf(protocol.CodeMethodNotFound, "unknown method %q", method)
	}
	p := s.participant()
	if p == nil {
		return protocol.Errorf(protocol.CodeConflict, "%s: join first", method)
	}
	_, err := joinedMethods[method](s, p, params)
	return err
}

// AfterResponse runs work that must follow the response on the wire: the
// first subscriber offer after `join`, closing the socket after `leave`.
func (s *Session) AfterResponse() {
	s.nmu.Lock()
	s.releaseLocked() // the join result is queued: what was held follows it
	ended := s.endAfter
	s.endAfter = ""
	s.nmu.Unlock()
	s.mu.Lock()
	f := s.after
	s.after = nil
	s.mu.Unlock()
	if ended != "" {
		// Ended while its join was answered: the result, the held notes
		// and the leave are out; nothing starts for a participant gone.
		go s.conn.Close(1000, ended)
		return
	}
	if f != nil {
		f()
	}
}

// Closed detaches the participant when the socket is gone: it leaves after
// the resume window unless a new socket resumes it (see session_resume.go).
func (s *Session) Closed() {
	if p := s.participant(); p != nil {
		p.Detach(s)
	}
}

// Notify implements room.Peer.
func (s *Session) Notify(method string, params any) {
	s.nmu.Lock()
	defer s.nmu.Unlock()
	if s.over {
		return
	}
	if s.holding && len(s.held) < maxHeld {
		raw, err := encodeObject(params) // now: params may change once we return
		if err != nil {
			s.log.Debug("notification not sent", "method", method, "err", err)
			return
		}
		s.held = append(s.held, heldNote{method, raw})
		return
	}
	s.releaseLocked() // held notes first, should there be too many
	s.send(method, params)
}

func (s *Session) send(method string, params any) {
	if err := s.conn.Notify(method, params); err != nil {
		s.log.Debug("notification not sent", "method", method, "err", err)
	}
}

// hold keeps notifications back until release.
func (s *Session) hold() {
	s.nmu.Lock()
	s.holding = true
	s.nmu.Unlock()
}

// releaseLocked sends the notifications held back, in order, and stops
// holding; the caller holds nmu.
func (s *Session) releaseLocked() {
	s.holding = false
	for i, n := range s.held {
		s.send(n.method, n.params)
		s.held[i] = heldNote{}
	}
	s.held = nil
}

// End implements room.Peer: tell the client why, then close the socket.
func (s *Session) End(reason string) {
	// The socket closes asynchronously; the manager's Shutdown waits for it
	// so a stopping server does not exit before `leave` is sent.
	s.mgr.Linger(s.conn.Done())
	s.nmu.Lock()
	if s.over {
		s.nmu.Unlock()
		return
	}
	s.over = true
	if s.holding {
		// Ended while its join (or resume) is answered: kicked, the room
		// closed, or a join of the same identity on another socket in that
		// instant. The result still goes first (docs/PROTOCOL.md "Order
		// after join"; the leave came before it, to a client not joined
		// yet), then its notes and the leave; AfterResponse closes.
		raw, err := encodeObject(protocol.LeaveParams{Reason: reason})
		if err == nil {
			s.held = append(s.held, heldNote{protocol.MethodLeave, raw})
		}
		s.endAfter = reason
		s.nmu.Unlock()
		return
	}
	s.releaseLocked()
	s.send(protocol.MethodLeave, protocol.LeaveParams{Reason: reason})
	s.nmu.Unlock()
	go s.conn.Close(1000, reason)
}

func (s *Session) join(raw json.RawMessage) (any, *protocol.Error) {
	var params protocol.JoinParams
	if err := DecodeParams(raw, &params); err != nil {
		return nil, err
	}
	if s.participant() != nil {
		return nil, protocol.Errorf(protocol.CodeConflict, "already joined: one join per connection")
	}
	if err := validateJoin(&params); err != nil {
		return nil, err
	}
	s.hold() // until the result is queued (AfterResponse)
	if params.Resume != "" {
		return s.resume(&params) // see session_resume.go
	}
	req := room.JoinRequest{
		Room: params.Room, Name: params.Name, Metadata: params.Metadata,
		AutoSubscribe: params.AutoSubscribe == nil || *params.AutoSubscribe,
		AudioMix:      params.AudioMix,
	}
	if err := s.authorize(&params, &req); err != nil {
		return nil, err
	}
	p, res, err := s.mgr.Join(req, s)
	if err != nil {
		return nil, asProtocolError(err)
	}
	s.mu.Lock()
	s.p = p
	s.after = p.Start
	s.mu.Unlock()
	s.log.Info("joined", "room", params.Room, "participant", p.ID(), "name", params.Name)
	return res, nil
}

func validateJoin(p *protocol.JoinParams) *protocol.Error {
	p.Room = protocol.RoomName(p.Room)
	switch {
	case p.Room == "":
		return protocol.Errorf(protocol.CodeInvalidParams, `invalid params: "room" is required`)
	case utf8.RuneCountInString(p.Room) > maxRoomName:
		return protocol.Errorf(protocol.CodeInvalidParams, `invalid params: "room" is longer than %d characters`, maxRoomName)
	case strings.IndexFunc(p.Room, unicode.IsControl) >= 0 || strings.Contains(p.Room, "/"):
		return protocol.Errorf(protocol.CodeInvalidParams, `invalid params: "room" must not contain control characters or "/"`)
	case utf8.RuneCountInString(p.Name) > maxName:
		return protocol.Errorf(protocol.CodeInvalidParams, `invalid params: "name" is longer than %d characters`, maxName)
	case len(p.Metadata) > maxMetadata:
		return protocol.Errorf(protocol.CodeTooLarge, `"metadata" is larger than %d bytes`, maxMetadata)
	}
	return nil
}

// asProtocolError keeps protocol errors and hides internal ones.
func asProtocolError(err error) *protocol.Error {
	if err == nil {
		return nil
	}
	if pe, ok := err.(*protocol.Error); ok {
		return pe
	}
	return protocol.Errorf(protocol.CodeInternal, "internal error")
}

type methodHandler func(s *Session, p *room.Participant, params json.RawMessage) (any, *protocol.Error)

// joinedMethods are the methods allowed once joined.
var joinedMethods = map[string]methodHandler{
	protocol.MethodOffer: func(s *Session, p *room.Participant, raw json.RawMessage) (any, *protocol.Error) {
		// The candidates of the answer follow the result that carries it.
		p.HoldPublisherCandidates()
		s.mu.Lock()
		s.after = p.ReleasePublisherCandidates
		s.mu.Unlock()
		var params protocol.OfferParams
		if err := DecodeParams(raw, &params); err != nil {
			return nil, err
		}
		if params.SDP == "" {
			return nil, protocol.Errorf(protocol.CodeInvalidParams, `invalid params: "sdp" is required`)
		}
		listed := make(map[string]bool, len(params.Tracks))
		for _, t := range params.Tracks {
			if t.TrackID == "" {
				return nil, protocol.Errorf(protocol.CodeInvalidParams, `invalid params: every track needs a "trackId"`)
			}
			// Listed twice (say microphone, then camera), the last entry
			// silently won: refused, as the client meant one of them.
			if listed[t.TrackID] {
				return nil, protocol.Errorf(protocol.CodeInvalidParams, `invalid params: "tracks" lists trackId %q twice`, t.TrackID)
			}
			listed[t.TrackID] = true
		}
		res, err := p.HandleOffer(params)
		if err != nil {
			return nil, asProtocolError(err)
		}
		return res, nil
	},
	protocol.MethodAnswer: func(_ *Session, p *room.Participant, raw json.RawMessage) (any, *protocol.Error) {
		var params protocol.SDPParams
		if err := DecodeParams(raw, &params); err != nil {
			return nil, err
		}
		if params.SDP == "" {
			return nil, protocol.Errorf(protocol.CodeInvalidParams, `invalid params: "sdp" is required`)
		}
		return nil, asProtocolError(p.HandleAnswer(params.SDP))
	},
	protocol.MethodCandidate: func(_ *Session, p *room.Participant, raw json.RawMessage) (any, *protocol.Error) {
		var params protocol.CandidateParams
		if err := DecodeParams(raw, &params); err != nil {
			return nil, err
		}
		return nil, asProtocolError(p.HandleCandidate(params))
	},
	protocol.MethodSubscribe: func(_ *Session, p *room.Participant, raw json.RawMessage) (any, *protocol.Error) {
		ids, err := decodeTrackIDs(raw)
		if err != nil {
			return nil, err
		}
		return protocol.Empty{}, asProtocolError(p.Subscribe(ids))
	},
	protocol.MethodUnsubscribe: func(_ *Session, p *room.Participant, raw json.RawMessage) (any, *protocol.Error) {
		ids, err := decodeTrackIDs(raw)
		if err != nil {
			return nil, err
		}
		return protocol.Empty{}, asProtocolError(p.Unsubscribe(ids))
	},
	protocol.MethodSetSubscription: func(_ *Session, p *room.Participant, raw json.RawMessage) (any, *protocol.Error) {
		var params protocol.SetSubscriptionParams
		if err := DecodeParams(raw, &params); err != nil {
			return nil, err
		}
		if params.TrackID == "" {
			return nil, protocol.Errorf(protocol.CodeInvalidParams, `invalid params: "trackId" is required`)
		}
		return protocol.Empty{}, asProtocolError(p.SetSubscription(params))
	},
	protocol.MethodMute: func(_ *Session, p *room.Participant, raw json.RawMessage) (any, *protocol.Error) {
		var params struct {
			TrackID string `json:"trackId"`
			Muted   *bool  `json:"muted"`
		}
		if err := DecodeParams(raw, &params); err != nil {
			return nil, err
		}
		// Name the field that is actually missing, so the message says
		// what was wrong (PROTOCOL.md, Errors).
		if params.TrackID == "" {
			return nil, protocol.Errorf(protocol.CodeInvalidParams, `invalid params: "trackId" is required`)
		}
		if params.Muted == nil {
			return nil, protocol.Errorf(protocol.CodeInvalidParams, `invalid params: "muted" is required`)
		}
		return protocol.Empty{}, asProtocolError(p.Mute(params.TrackID, *params.Muted))
	},
	protocol.MethodUnpublish: func(_ *Session, p *room.Participant, raw json.RawMessage) (any, *protocol.Error) {
		var params protocol.UnpublishParams
		if err := DecodeParams(raw, &params); err != nil {
			return nil, err
		}
		if params.TrackID == "" {
			return nil, protocol.Errorf(protocol.CodeInvalidParams, `invalid params: "trackId" is required`)
		}
		return protocol.Empty{}, asProtocolError(p.Unpublish(params.TrackID))
	},
	protocol.MethodSetAudioMix: func(_ *Session, p *room.Participant, raw json.RawMessage) (any, *protocol.Error) {
		var params protocol.SetAudioMixParams
		if err := DecodeParams(raw, &params); err != nil {
			return nil, err
		}
		if params.Enabled == nil {
			return nil, protocol.Errorf(protocol.CodeInvalidParams, `invalid params: "enabled" is required`)
		}
		return protocol.Empty{}, asProtocolError(p.SetAudioMix(*params.Enabled))
	},
	protocol.MethodLeave: func(s *Session, p *room.Participant, _ json.RawMessage) (any, *protocol.Error) {
		p.Leave()
		s.mu.Lock()
		s.after = func() { go s.conn.Close(1000, protocol.ReasonClientLeave) }
		s.mu.Unlock()
		return protocol.Empty{}, nil
	},
}

func decodeTrackIDs(raw json.RawMessage) ([]string, *protocol.Error) {
	var params protocol.TrackIDsParams
	if err := DecodeParams(raw, &params); err != nil {
		return nil, err
	}
	if len(params.TrackIDs) == 0 {
		return nil, protocol.Errorf(protocol.CodeInvalidParams, `invalid params: "trackIds" must list at least one track id`)
	}
	if len(params.TrackIDs) > 256 {
		return nil, protocol.Errorf(protocol.CodeTooLarge, `"trackIds" lists more than 256 tracks`)
	}
	return params.TrackIDs, nil
}
