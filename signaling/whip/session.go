package whip

import (
	"net/http"
	"strings"
	"sync"

	"github.com/pion/webrtc/v4"
	"github.com/starling-rtc/starling/protocol"
	"github.com/starling-rtc/starling/room"
)

// session is one WHIP or WHEP session: a participant of a room whose
// client speaks HTTP. It is the participant's room.Peer: notifications
// matter only to a WHEP viewer (they say what to watch); End removes it.
type session struct {
	h        *Handler
	id       string
	kind     kind
	room     string
	identity string // the token's identity; "" on an open server
	target   string // the connection the client offered: publisher or subscriber
	viewer   *viewer

	mu   sync.Mutex
	p    *room.Participant
	etag string // names the current ICE session (the server's ufrag)
	done bool
}

// Notify implements room.Peer; it never blocks.
func (s *session) Notify(method string, params any) {
	if s.viewer != nil {
		s.viewer.notify(method, params)
	}
}

// End implements room.Peer: the participant left the room (kicked, room
// closed, its connection failed): the session is gone.
func (s *session) End(reason string) {
	s.h.log.Info("session ended", "kind", s.kind, "room", s.room, "session", s.id, "reason", reason)
	s.forget()
}

// forget removes the session from the table and stops its viewer.
func (s *session) forget() {
	s.mu.Lock()
	already := s.done
	s.done = true
	s.mu.Unlock()
	if already {
		return
	}
	s.h.mu.Lock()
	delete(s.h.sessions, s.id)
	s.h.mu.Unlock()
	if s.viewer != nil {
		s.viewer.stop()
	}
}

// end is DELETE: the participant leaves and the session is gone.
func (s *session) end() {
	s.mu.Lock()
	p := s.p
	s.mu.Unlock()
	if p != nil {
		p.Leave()
	}
	s.forget()
}

func (s *session) isDone() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.done
}

func (s *session) participant() *room.Participant {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.p
}

// endpoint serves POST (a new session) and OPTIONS on a room's WHIP or
// WHEP endpoint.
func (h *Handler) endpoint(w http.ResponseWriter, r *http.Request, k kind) {
	const allow = "OPTIONS, POST"
	if !h.cors(w, r, allow) {
		return
	}
	switch r.Method {
	case http.MethodOptions:
		w.Header().Set("Allow", allow)
		w.Header().Set("Accept-Post", typeSDP)
		w.WriteHeader(http.StatusNoContent)
		return
	case http.MethodPost:
	default:
		w.Header().Set("Allow", allow)
		writeError(w, fail(http.StatusMethodNotAllowed, r.Method+" is not allowed here: POST an SDP offer"))
		return
	}
	s, answer, res, e := h.create(w, r, k)
	if e != nil {
		writeError(w, e)
		return
	}
	hd := w.Header()
	hd.Set("Content-Type", typeSDP)
	hd.Set("Location", location(s.room, k, s.id))
	hd.Set("ETag", s.currentETag())
	hd.Set("Accept-Patch", typeSDPFrag)
	for _, l := range linkHeaders(res.ICEServers) {
		hd.Add("Link", l)
	}
	w.WriteHeader(http.StatusCreated)
	_, _ = w.Write([]byte(answer))
}

// create checks a POST and makes its session: the participant joins, and
// its offer is answered.
func (h *Handler) create(w http.ResponseWriter, r *http.Request, k kind) (*session, string, *protocol.JoinResult, *httpError) {
	name, e := roomName(r)
	if e != nil {
		return nil, "", nil, e
	}
	shown, e := queryName(r)
	if e != nil {
		return nil, "", nil, e
	}
	offer, e := readBody(w, r, typeSDP)
	if e != nil {
		return nil, "", nil, e
	}
	identity, perms, e := h.authorize(r, name, k)
	if e != nil {
		return nil, "", nil, e
	}
	if _, e := parseOffer(offer); e != nil {
		return nil, "", nil, e
	}
	s := &session{h: h, id: newSessionID(), kind: k, room: name, identity: identity, target: protocol.TargetPublisher}
	var anns []protocol.TrackAnnouncement
	lateCheck := false // the WHEP viewer's ?participant= and ?track= are checked after the join
	switch k {
	case kindWHIP:
		if offer, anns, e = prepareWHIPOffer(offer); e != nil {
			return nil, "", nil, e
		}
		if len(anns) == 0 {
			return nil, "", nil, fail(http.StatusBadRequest, "the offer sends no audio or video (WHIP publishes: use sendonly media sections)")
		}
	case kindWHEP:
		s.target = protocol.TargetSubscriber
		if !receivesMedia(offer) {
			return nil, "", nil, fail(http.StatusBadRequest, "the offer receives no audio or video (WHEP watches: use recvonly media sections)")
		}
		v, e := newViewer(s, r.URL.Query())
		if e != nil {
			return nil, "", nil, e
		}
		// A room with no part on this node of a cluster is checked once
		// joined: the join brings the other nodes' participants here.
		if rm := h.opts.Rooms.Room(name); rm != nil {
			if e := v.check(name, rm.Participants()); e != nil {
				return nil, "", nil, e
			}
		} else if exists, err := inCluster(h.opts.InCluster, name); err != nil {
			return nil, "", nil, fail(http.StatusServiceUnavailable, err.Error())
		} else if !exists {
			return nil, "", nil, fail(http.StatusNotFound, "room "+name+" does not exist: nothing to watch")
		} else {
			lateCheck = true
		}
		s.viewer = v
	}
	if !h.opts.Limiter.Allow(r.RemoteAddr) {
		return nil, "", nil, fail(http.StatusTooManyRequests, "too many sessions from your address; retry in a few seconds")
	}
	p, res, err := h.opts.Rooms.Join(room.JoinRequest{
		Room: name, Name: displayName(shown, identity, k), Identity: identity,
		Permissions: perms, Answering: true,
	}, s)
	if err != nil {
		return nil, "", nil, h.fromProtocol(err, true)
	}
	s.mu.Lock()
	s.p = p
	s.mu.Unlock()
	if lateCheck {
		if e := s.viewer.check(name, p.Room().Participants()); e != nil {
			p.Leave()
			return nil, "", nil, e
		}
	}
	answer, err := s.answer(offer, anns)
	if err != nil {
		p.Leave()
		return nil, "", nil, h.fromProtocol(err, false)
	}
	s.mu.Lock()
	s.etag = etagOf(answer)
	ended := s.done
	s.mu.Unlock()
	if ended { // its connection or room ended while it was being answered
		return nil, "", nil, fail(http.StatusServiceUnavailable, "the session ended while it was being set up; retry")
	}
	h.mu.Lock()
	h.sessions[s.id] = s
	h.mu.Unlock()
	if s.isDone() { // End came between the check and the table: forget it again
		s.forget()
		h.mu.Lock()
		delete(h.sessions, s.id)
		h.mu.Unlock()
	}
	if s.viewer != nil {
		s.viewer.start()
	}
	h.log.Info("session started", "kind", k, "room", name, "session", s.id, "participant", p.ID())
	return s, answer, res, nil
}

// answer applies the client's offer to the session's one connection.
func (s *session) answer(offer string, anns []protocol.TrackAnnouncement) (string, error) {
	if s.kind == kindWHEP {
		return s.p.AnswerSubscriber(offer)
	}
	res, err := s.p.HandleOffer(protocol.OfferParams{SDP: offer, Tracks: anns})
	if err != nil {
		return "", err
	}
	return res.SDP, nil
}

func (s *session) currentETag() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.etag
}

// resource serves a session: PATCH (trickle ICE, ICE restart), DELETE (the
// end) and OPTIONS.
func (h *Handler) resource(w http.ResponseWriter, r *http.Request, k kind) {
	const allow = "OPTIONS, PATCH, DELETE"
	if !h.cors(w, r, allow) {
		return
	}
	if r.Method == http.MethodOptions {
		w.Header().Set("Allow", allow)
		w.Header().Set("Accept-Patch", typeSDPFrag)
		w.WriteHeader(http.StatusNoContent)
		return
	}
	if r.Method != http.MethodPatch && r.Method != http.MethodDelete {
		w.Header().Set("Allow", allow)
		writeError(w, fail(http.StatusMethodNotAllowed, r.Method+" is not allowed on a session: PATCH or DELETE"))
		return
	}
	name, e := roomName(r)
	if e != nil {
		writeError(w, e)
		return
	}
	h.mu.Lock()
	s := h.sessions[r.PathValue("id")]
	h.mu.Unlock()
	if s == nil || s.room != name || s.kind != k {
		writeError(w, fail(http.StatusNotFound, "no such "+strings.ToUpper(string(k))+" session (it ended, or never existed)"))
		return
	}
	if e := h.sameClient(r, s); e != nil {
		writeError(w, e)
		return
	}
	if r.Method == http.MethodDelete {
		s.end()
		w.WriteHeader(http.StatusOK)
		return
	}
	h.patch(w, r, s)
}

// sameClient checks, when tokens are required, that a session request
// carries a valid token of the session's identity. The session URL is
// unguessable already; the token keeps a leaked URL from being enough.
func (h *Handler) sameClient(r *http.Request, s *session) *httpError {
	if !h.opts.Auth.Enabled() {
		return nil
	}
	claims, err := h.opts.Auth.Verify(bearer(r))
	if err != nil {
		return unauthorized(err)
	}
	if claims.Identity() != s.identity || claims.CanJoin(s.room) != nil {
		return fail(http.StatusForbidden, "token is not the one of this session's participant")
	}
	return nil
}

// patch is trickle ICE (RFC 8840 fragments; If-Match names the ICE session)
// or, with If-Match: * and new credentials, an ICE restart answered with
// the server's new credentials and candidates.
func (h *Handler) patch(w http.ResponseWriter, r *http.Request, s *session) {
	body, e := readBody(w, r, typeSDPFrag)
	if e != nil {
		writeError(w, e)
		return
	}
	frag, e := parseFrag(body)
	if e != nil {
		writeError(w, e)
		return
	}
	p := s.participant()
	match := strings.TrimSpace(r.Header.Get("If-Match"))
	if match == "*" {
		// An ICE restart is new credentials (RFC 8839 4.4.1.1.1, RFC 9725
		// 4.3.3), not the asterisk: with the session's own ice-ufrag the
		// fragment is a trickle whose precondition holds (RFC 9110
		// 13.1.1: "*" matches any current ICE session), answered 204. It
		// was answered 200 with an sdpfrag as if the server had restarted.
		ufrag, pwd := p.RemoteICE(s.target)
		if frag.ufrag == "" || frag.ufrag != ufrag {
			h.restart(w, s, p, frag)
			return
		}
		if frag.pwd != "" && frag.pwd != pwd {
			writeError(w, fail(http.StatusUnprocessableEntity, "the session's ice-ufrag with another ice-pwd: an ICE restart needs a new a=ice-ufrag and a=ice-pwd, a trickle the current ones"))
			return
		}
		match = ""
	}
	if match != "" && !etagListed(match, s.currentETag()) {
		writeError(w, fail(http.StatusPreconditionFailed, "If-Match does not name the current ICE session ("+s.currentETag()+")"))
		return
	}
	if ufrag, _ := p.RemoteICE(s.target); frag.ufrag != "" && frag.ufrag != ufrag {
		writeError(w, fail(http.StatusUnprocessableEntity, "ice-ufrag is not the session's: for an ICE restart send If-Match: *"))
		return
	}
	if e := addCandidates(p, s.target, frag); e != nil {
		writeError(w, e)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// etagListed reports whether an If-Match list (RFC 9110 13.1.1: one or
// more entity tags, comma-separated) names etag; the comparison is strong,
// so a weak tag (W/"...") never matches. A list with the current ETag was
// refused 412 as a whole.
func etagListed(list, etag string) bool {
	for _, t := range strings.Split(list, ",") {
		if strings.TrimSpace(t) == etag {
			return true
		}
	}
	return false
}

// restart restarts ICE with the client's new credentials, then adds its
// candidates.
func (h *Handler) restart(w http.ResponseWriter, s *session, p *room.Participant, frag *sdpFrag) {
	if frag.ufrag == "" || frag.pwd == "" {
		writeError(w, fail(http.StatusBadRequest, "an ICE restart needs a=ice-ufrag and a=ice-pwd"))
		return
	}
	local, err := p.RestartICE(s.target, frag.ufrag, frag.pwd)
	if err != nil {
		writeError(w, fail(http.StatusUnprocessableEntity, "ICE restart failed: "+err.Error()))
		return
	}
	if e := addCandidates(p, s.target, frag); e != nil {
		writeError(w, e)
		return
	}
	etag := etagOf(local)
	s.mu.Lock()
	s.etag = etag
	s.mu.Unlock()
	w.Header().Set("Content-Type", typeSDPFrag)
	w.Header().Set("ETag", etag)
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write([]byte(answerFrag(local)))
}

// addCandidates adds a fragment's candidates to the session's connection.
func addCandidates(p *room.Participant, target string, frag *sdpFrag) *httpError {
	for _, c := range frag.candidates {
		mid := c.mid
		err := p.HandleCandidate(protocol.CandidateParams{Target: target, Candidate: &webrtc.ICECandidateInit{Candidate: c.line, SDPMid: &mid}})
		if err != nil {
			return fail(http.StatusBadRequest, "bad candidate "+c.line)
		}
	}
	return nil
}

// inCluster asks f (Options.InCluster) whether the room lives on another
// node; false on a single node (f nil).
func inCluster(f func(string) (bool, error), name string) (bool, error) {
	if f == nil {
		return false, nil
	}
	return f(name)
}
