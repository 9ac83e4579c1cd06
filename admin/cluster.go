package admin

import (
	"net/http"
	"slices"
	"sort"
	"unicode/utf8"

	"github.com/starling-rtc/starling/protocol"
	"github.com/starling-rtc/starling/room"
)

// LocalParticipants is this node's part of a room as the API shows it:
// its own participants (not the stubs of other nodes' ones) with their
// permissions and subscriptions. In a cluster each node answers with it
// for the node that serves GET /v1/rooms/{room}.
func LocalParticipants(rm *room.Room) []Participant {
	out := []Participant{}
	for _, info := range rm.Participants() {
		if p := rm.Participant(info.ID); p != nil && p.Remote() == "" {
			out = append(out, view(p, info))
		}
	}
	return out
}

// getClusterRoom answers GET /v1/rooms/{room} on a cluster node, whether or
// not it has a part of the room: every node's participants as that node
// sees them. A participant whose node did not answer is shown from this
// node's stub of it (no permissions, no subscriptions), if it has one.
func (a *API) getClusterRoom(w http.ResponseWriter, r *http.Request, name string) {
	if _, ok := a.authorize(w, r, name, false); !ok {
		return
	}
	rm := a.opts.Rooms.Room(name)
	sid, ps, ok, err := a.opts.RemoteRoom(name)
	if !ok && rm == nil {
		writeError(w, notFoundOr(err, "no room %q", name))
		return
	}
	if !ok {
		sid = rm.SID()
	}
	out := RoomDetail{Name: name, SID: sid, Participants: append([]Participant{}, ps...)}
	if rm != nil {
		seen := make(map[string]bool, len(ps))
		for _, p := range ps {
			seen[p.ID] = true
		}
		for _, info := range rm.Participants() {
			if p := rm.Participant(info.ID); p != nil && !seen[info.ID] {
				out.Participants = append(out.Participants, view(p, info))
			}
		}
	}
	sort.SliceStable(out.Participants, func(i, j int) bool { return out.Participants[i].JoinedAt < out.Participants[j].JoinedAt })
	writeJSON(w, http.StatusOK, out)
}

// getClusterParticipant answers GET /v1/rooms/{room}/participants/{id} on a
// cluster node: a participant of another node is asked of that node.
func (a *API) getClusterParticipant(w http.ResponseWriter, r *http.Request) {
	name, id := r.PathValue("room"), r.PathValue("id")
	if _, ok := a.authorize(w, r, name, false); !ok {
		return
	}
	var stub *room.Participant
	if rm := a.opts.Rooms.Room(name); rm != nil {
		p := rm.Participant(id)
		if p != nil && p.Remote() == "" {
			writeJSON(w, http.StatusOK, view(p, p.Info()))
			return
		}
		stub = p
	}
	_, ps, ok, err := a.opts.RemoteRoom(name)
	if ok {
		for _, p := range ps {
			if p.ID == id {
				writeJSON(w, http.StatusOK, p)
				return
			}
		}
	}
	if stub != nil { // its node did not answer
		writeJSON(w, http.StatusOK, view(stub, stub.Info()))
		return
	}
	writeError(w, notFoundOr(err, "no participant %q in room %q", id, name))
}

// notFoundOr is a 404 with the message, or a 503 when err says the
// cluster's room state could not be read (the room may exist).
func notFoundOr(err error, format string, args ...any) *protocol.Error {
	if err != nil {
		return protocol.Errorf(protocol.CodeUnavailable, "%v", err)
	}
	return protocol.Errorf(protocol.CodeNotFound, format, args...)
}

// farRoom reports whether the request's {room} has no part on this node
// of a cluster: its participants are all on other nodes, and no stub here
// can carry a command to them (kickFar, muteFar, updateFar do, through
// onParticipant).
func (a *API) farRoom(r *http.Request) bool {
	return a.opts.ControlRemote != nil && a.opts.RemoteRoom != nil && a.opts.Rooms.Room(r.PathValue("room")) == nil
}

// farParticipant authorizes the request and finds {id} among the other
// nodes' participants of {room}, as GET shows it.
func (a *API) farParticipant(w http.ResponseWriter, r *http.Request) (Participant, bool) {
	name, id := r.PathValue("room"), r.PathValue("id")
	if _, ok := a.authorize(w, r, name, false); !ok {
		return Participant{}, false
	}
	_, ps, ok, err := a.opts.RemoteRoom(name)
	if !ok {
		writeError(w, notFoundOr(err, "no room %q", name))
		return Participant{}, false
	}
	for _, p := range ps {
		if p.ID == id {
			return p, true
		}
	}
	writeError(w, protocol.Errorf(protocol.CodeNotFound, "no participant %q in room %q", id, name))
	return Participant{}, false
}

// control sends ev to p's node, or answers the error: 404 when p has
// just gone, 409 when its node is gone (mute, update: ControlRemote).
func (a *API) control(w http.ResponseWriter, r *http.Request, p Participant, ev room.Event) bool {
	if err := a.opts.ControlRemote(r.PathValue("room"), p.ID, ev); err != nil {
		writeError(w, asProtocol(err))
		return false
	}
	a.log.Info("admin: command sent to the participant's node", "type", ev.Type, "room", r.PathValue("room"), "participant", p.ID, "remote", r.RemoteAddr)
	return true
}

func (a *API) kickFar(w http.ResponseWriter, r *http.Request, p Participant, _ *noBody) {
	if a.control(w, r, p, room.Event{Type: room.CtlKick, Reason: protocol.ReasonKicked}) {
		writeJSON(w, http.StatusOK, protocol.Empty{})
	}
}

func (a *API) muteFar(w http.ResponseWriter, r *http.Request, p Participant, req *MuteRequest) {
	if !slices.ContainsFunc(p.Tracks, func(t protocol.Track) bool { return t.ID == req.TrackID }) {
		writeError(w, protocol.Errorf(protocol.CodeNotFound, "participant %s publishes no track %q", p.ID, req.TrackID))
		return
	}
	if a.control(w, r, p, room.Event{Type: room.CtlMute, TrackID: req.TrackID, Muted: *req.Muted}) {
		writeJSON(w, http.StatusOK, protocol.Empty{})
	}
}

func (a *API) updateFar(w http.ResponseWriter, r *http.Request, p Participant, req *UpdateRequest) {
	if !a.control(w, r, p, room.Event{Type: room.CtlUpdate, Name: req.Name, Metadata: req.Metadata}) {
		return
	}
	// The participant's node applies the same change (remote.go).
	if req.Name != nil {
		p.Name = *req.Name
	}
	if req.Metadata != nil {
		p.Metadata = *req.Metadata
	}
	writeJSON(w, http.StatusOK, p)
}

// sendDataFar is POST .../data for a room with no part on this node: the
// nodes with a part deliver it (cluster: CtlData).
func (a *API) sendDataFar(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("room")
	if _, ok := a.authorize(w, r, name, false); !ok {
		return
	}
	var req DataRequest
	if !a.decodeData(w, r, &req) {
		return
	}
	if !utf8.ValidString(*req.Payload) {
		writeError(w, protocol.Errorf(protocol.CodeInvalidParams, "invalid params: payload must be UTF-8 text"))
		return
	}
	ok, unknown, err := a.opts.DataRemote(name, *req.Payload, req.To)
	switch {
	case !ok:
		writeError(w, notFoundOr(err, "no room %q", name))
	case unknown != "":
		writeError(w, protocol.Errorf(protocol.CodeNotFound, "no participant %q in room %q", unknown, name))
	default:
		writeJSON(w, http.StatusOK, protocol.Empty{})
	}
}
