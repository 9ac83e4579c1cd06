// Package admin is Starling's admin HTTP API under /v1/: list and inspect
// rooms, close a room, remove a participant, mute a participant's track,
// update a participant's name or metadata, and send a data message to a
// room. Requests and responses are JSON; errors are {"code", "message"} with
// the signaling protocol's codes (docs/admin-api.md).
//
// With API keys configured every request needs "Authorization: Bearer
// <token>" with the admin grant (scoped to one room when the token names
// one). Without keys the API answers loopback clients only.
package admin

import (
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/starling-rtc/starling/auth"
	"github.com/starling-rtc/starling/protocol"
	"github.com/starling-rtc/starling/room"
)

// Limits on request bodies and fields.
const (
	maxBody     = 256 << 10
	maxName     = 256
	maxMetadata = 16 << 10
)

// Options configure the API.
type Options struct {
	Rooms *room.Manager
	// Auth checks tokens; nil or without keys = loopback clients only, no token.
	Auth *auth.Verifier
	// MaxDataMessage bounds POST .../data payloads (default protocol.MaxDataMessage).
	MaxDataMessage int
	Logger         *slog.Logger
	// CheckOrigin refuses browser requests from other sites (nil: any):
	// without it, a web page could make a browser on the server's machine
	// post to the open server's API, which trusts loopback clients.
	CheckOrigin func(*http.Request) bool
	// Nodes lists the cluster's nodes for GET /v1/nodes (a JSON array);
	// nil on a single node, which lists itself alone.
	Nodes func() any
	// RemoteRoom finds a room with no participant on this node among the
	// cluster's nodes; CloseRemote closes the other nodes' parts of a room
	// (true if the room exists in the cluster; sid the instance closed).
	// Both nil on a single node.
	// RemoteRoom's participants come from their own nodes, with their
	// permissions and subscriptions (LocalParticipants there); err (with
	// ok false) when the cluster's room state could not be read, so
	// nobody knows whether the room exists: 503, never 404.
	RemoteRoom  func(name string) (sid string, ps []Participant, ok bool, err error)
	CloseRemote func(name string) (sid string, ok bool)
	// ClusterRooms lists every room of the cluster for GET /v1/rooms, sorted
	// by name; nil (or a nil list and no error) on a single node, which
	// lists its own rooms.
	ClusterRooms func() ([]RoomSummary, error)
	// SetMix sets a participant's voice in a room's mix for the whole
	// cluster: gain and muted when not nil; it answers the setting now.
	// clustered is false on a single node, where the room does it.
	SetMix func(room, participant string, gain *float64, muted *bool) (st MixState, clustered bool, err error)
	// ControlRemote sends a command to the node of a participant of a room
	// that has no part on this node: a *protocol.Error when it cannot (404:
	// no such participant in the cluster; 409: its node is gone, it waits
	// to resume elsewhere; 503: not known now); nil on a single node. See
	// cluster.go.
	ControlRemote func(room, participant string, ev room.Event) error
	// DataRemote sends a server data message to the participants (those
	// in to, all when empty) of a room with no part on this node; ok is
	// false when the room is unknown, unknown the first id of to that is
	// not in it. Nil on a single node.
	DataRemote func(room, payload string, to []string) (ok bool, unknown string, err error)
}

// API serves the admin routes.
type API struct {
	opts Options
	log  *slog.Logger
}

// New makes the API.
func New(opts Options) *API {
	if opts.MaxDataMessage <= 0 {
		opts.MaxDataMessage = protocol.MaxDataMessage
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	return &API{opts: opts, log: opts.Logger}
}

// Register adds the routes to mux.
func (a *API) Register(mux *http.ServeMux) {
	mux.HandleFunc("GET /v1/rooms", a.listRooms)
	mux.HandleFunc("GET /v1/nodes", a.listNodes)
	mux.HandleFunc("GET /v1/rooms/{room}", roomPath(a.getRoom))
	mux.HandleFunc("DELETE /v1/rooms/{room}", roomPath(a.closeRoom))
	mux.HandleFunc("POST /v1/rooms/{room}/data", roomPath(a.sendData))
	mux.HandleFunc("GET /v1/rooms/{room}/participants/{id}", roomPath(a.getParticipant))
	mux.HandleFunc("DELETE /v1/rooms/{room}/participants/{id}", roomPath(onParticipant(a, nil, a.removeParticipant, a.kickFar)))
	mux.HandleFunc("PATCH /v1/rooms/{room}/participants/{id}", roomPath(onParticipant(a, decodeUpdate, a.updateParticipant, a.updateFar)))
	mux.HandleFunc("POST /v1/rooms/{room}/participants/{id}/mute", roomPath(onParticipant(a, decodeMute, a.mute, a.muteFar)))
	mux.HandleFunc("POST /v1/rooms/{room}/participants/{id}/mix", roomPath(a.mix)) // mix.go
	registerMethods(mux)                                                           // methods.go
}

// RoomSummary is one entry of GET /v1/rooms.
type RoomSummary struct {
	Name            string `json:"name"`
	SID             string `json:"sid"`
	NumParticipants int    `json:"numParticipants"`
	NumTracks       int    `json:"numTracks"`
}

// RoomList is the result of GET /v1/rooms.
type RoomList struct {
	Rooms []RoomSummary `json:"rooms"`
}

// Participant is a participant as the admin API shows it: the protocol's
// view plus its identity and permissions.
type Participant struct {
	protocol.Participant
	Identity      string         `json:"identity"`
	Permissions   Permissions    `json:"permissions"`
	Subscriptions []Subscription `json:"subscriptions"`
}

// Subscription is one track a participant receives, with what the server
// sent and what the participant's receiver reports say about it.
type Subscription struct {
	TrackID     string `json:"trackId"`
	Layer       string `json:"layer"` // video: low, medium, high; "" for audio, while paused or waiting for a keyframe
	PacketsSent uint64 `json:"packetsSent"`
	BytesSent   uint64 `json:"bytesSent"`
	Dropped     uint64 `json:"dropped"` // not sent: send queue full or write failed
	// From the latest receiver report; absent until the first one.
	Reception *Reception `json:"reception,omitempty"`
}

// Reception is a subscriber's receiver report about one track.
type Reception struct {
	FractionLost float64 `json:"fractionLost"` // 0..1 over the last report interval
	PacketsLost  int32   `json:"packetsLost"`  // cumulative
	JitterMs     float64 `json:"jitterMs"`
	RTTMs        float64 `json:"rttMs"`      // 0 until the subscriber echoes a sender report
	ReportedAt   int64   `json:"reportedAt"` // unix milliseconds
}

// Permissions mirror the token's grants the participant joined with.
type Permissions struct {
	CanPublish     bool `json:"canPublish"`
	CanSubscribe   bool `json:"canSubscribe"`
	CanPublishData bool `json:"canPublishData"`
}

// RoomDetail is the result of GET /v1/rooms/{room}.
type RoomDetail struct {
	Name         string        `json:"name"`
	SID          string        `json:"sid"`
	Participants []Participant `json:"participants"`
}

// MuteRequest is the body of POST .../mute.
type MuteRequest struct {
	TrackID string `json:"trackId"`
	Muted   *bool  `json:"muted"`
}

// UpdateRequest is the body of PATCH .../participants/{id}; absent fields are unchanged.
type UpdateRequest struct {
	Name     *string `json:"name"`
	Metadata *string `json:"metadata"`
}

// DataRequest is the body of POST .../data.
type DataRequest struct {
	Payload *string `json:"payload"`
	// To lists participant ids; absent (or null) sends to everyone in the
	// room, an empty list is refused (bodies.go).
	To []string `json:"to,omitempty"`
}

func (a *API) listRooms(w http.ResponseWriter, r *http.Request) {
	claims, ok := a.authorize(w, r, "", true)
	if !ok {
		return
	}
	out := RoomList{Rooms: []RoomSummary{}}
	if a.opts.ClusterRooms != nil {
		all, err := a.opts.ClusterRooms()
		if err != nil {
			a.log.Warn("listing the cluster's rooms", "err", err)
			writeError(w, protocol.Errorf(protocol.CodeUnavailable, "the cluster's room state is unavailable; try again"))
			return
		}
		if all != nil {
			for _, rs := range all {
				if claims == nil || claims.Grants.Room == "" || claims.Grants.Room == rs.Name {
					out.Rooms = append(out.Rooms, rs)
				}
			}
			writeJSON(w, http.StatusOK, out)
			return
		}
	}
	for _, name := range a.opts.Rooms.RoomNames() {
		if claims != nil && claims.Grants.Room != "" && claims.Grants.Room != name {
			continue
		}
		rm := a.opts.Rooms.Room(name)
		if rm == nil {
			continue
		}
		np, nt := rm.Counts()
		out.Rooms = append(out.Rooms, RoomSummary{Name: rm.Name(), SID: rm.SID(), NumParticipants: np, NumTracks: nt})
	}
	writeJSON(w, http.StatusOK, out)
}

func (a *API) getRoom(w http.ResponseWriter, r *http.Request) {
	if a.opts.RemoteRoom != nil {
		a.getClusterRoom(w, r, r.PathValue("room"))
		return
	}
	rm, ok := a.room(w, r)
	if !ok {
		return
	}
	out := RoomDetail{Name: rm.Name(), SID: rm.SID(), Participants: []Participant{}}
	for _, info := range rm.Participants() {
		if p := rm.Participant(info.ID); p != nil {
			out.Participants = append(out.Participants, view(p, info))
		}
	}
	writeJSON(w, http.StatusOK, out)
}

func view(p *room.Participant, info protocol.Participant) Participant {
	perms := p.Permissions()
	return Participant{Participant: info, Identity: p.Identity(), Permissions: Permissions{
		CanPublish: perms.CanPublish, CanSubscribe: perms.CanSubscribe, CanPublishData: perms.CanPublishData},
		Subscriptions: subscriptions(p)}
}

func subscriptions(p *room.Participant) []Subscription {
	out := []Subscription{}
	for _, sub := range p.Subscriptions() {
		d := sub.Down
		s := Subscription{TrackID: sub.TrackID, Layer: sub.Quality, Dropped: d.Dropped()}
		s.PacketsSent, s.BytesSent = d.Stats()
		if st, ok := d.ReceptionStats(); ok {
			ms := func(x time.Duration) float64 { return float64(x.Microseconds()) / 1000 }
			s.Reception = &Reception{FractionLost: st.FractionLost, PacketsLost: st.PacketsLost,
				JitterMs: ms(st.Jitter), RTTMs: ms(st.RTT), ReportedAt: st.At.UnixMilli()}
		}
		out = append(out, s)
	}
	return out
}

func (a *API) closeRoom(w http.ResponseWriter, r *http.Request) {
	if name := r.PathValue("room"); a.opts.CloseRemote != nil {
		if _, ok := a.authorize(w, r, name, false); !ok {
			return
		}
		sid, remote := a.opts.CloseRemote(name)
		// This node's part, of the instance closed: a join may have
		// opened a new room in its place meanwhile, which stays.
		if rm := a.opts.Rooms.Room(name); rm != nil && (!remote || rm.SID() == sid) {
			rm.Close(protocol.ReasonRoomClosed)
		} else if !remote {
			writeError(w, protocol.Errorf(protocol.CodeNotFound, "no room %q", name))
			return
		}
		a.log.Info("admin: room closed in the cluster", "room", name, "remote", r.RemoteAddr)
		writeJSON(w, http.StatusOK, protocol.Empty{})
		return
	}
	rm, ok := a.room(w, r)
	if !ok {
		return
	}
	rm.Close(protocol.ReasonRoomClosed)
	a.log.Info("admin: room closed", "room", rm.Name(), "remote", r.RemoteAddr)
	writeJSON(w, http.StatusOK, protocol.Empty{})
}

func (a *API) getParticipant(w http.ResponseWriter, r *http.Request) {
	if a.opts.RemoteRoom != nil {
		a.getClusterParticipant(w, r)
		return
	}
	p, ok := a.participant(w, r)
	if !ok {
		return
	}
	writeJSON(w, http.StatusOK, view(p, p.Info()))
}

// onParticipant serves a route on {room}/participants/{id} with a body of
// type B (nil decode: no body). The request is authorized and the
// participant found first, then the body is read and checked: local acts
// on a participant of this node's part of the room, far on one of a room
// with no part here, through its own node (cluster.go).
func onParticipant[B any](a *API, decode func(http.ResponseWriter, *http.Request, *B) bool,
	local func(http.ResponseWriter, *http.Request, *room.Participant, *B),
	far func(http.ResponseWriter, *http.Request, Participant, *B)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var req B
		if a.farRoom(r) {
			p, ok := a.farParticipant(w, r)
			if ok && (decode == nil || decode(w, r, &req)) {
				far(w, r, p, &req)
			}
			return
		}
		p, ok := a.participant(w, r)
		if ok && (decode == nil || decode(w, r, &req)) {
			local(w, r, p, &req)
		}
	}
}

// noBody is the body of a route that reads none.
type noBody struct{}

func (a *API) removeParticipant(w http.ResponseWriter, r *http.Request, p *room.Participant, _ *noBody) {
	p.Kick()
	a.log.Info("admin: participant removed", "room", p.Room().Name(), "participant", p.ID(), "remote", r.RemoteAddr)
	writeJSON(w, http.StatusOK, protocol.Empty{})
}

func (a *API) updateParticipant(w http.ResponseWriter, _ *http.Request, p *room.Participant, req *UpdateRequest) {
	if err := p.Update(req.Name, req.Metadata); err != nil {
		writeError(w, asProtocol(err))
		return
	}
	info := p.Info()
	if p.Remote() != "" {
		// Its node took the change and applies it (room/remote.go); this
		// node's stub of it learns it from that node's event, later.
		if req.Name != nil {
			info.Name = *req.Name
		}
		if req.Metadata != nil {
			info.Metadata = *req.Metadata
		}
	}
	writeJSON(w, http.StatusOK, view(p, info))
}

func (a *API) mute(w http.ResponseWriter, _ *http.Request, p *room.Participant, req *MuteRequest) {
	if err := p.ServerMute(req.TrackID, *req.Muted); err != nil {
		writeError(w, asProtocol(err))
		return
	}
	writeJSON(w, http.StatusOK, protocol.Empty{})
}

func (a *API) sendData(w http.ResponseWriter, r *http.Request) {
	if a.farRoom(r) && a.opts.DataRemote != nil {
		a.sendDataFar(w, r)
		return
	}
	rm, ok := a.room(w, r)
	if !ok {
		return
	}
	var req DataRequest
	if !a.decodeData(w, r, &req) {
		return
	}
	if err := rm.SendData(*req.Payload, req.To); err != nil {
		writeError(w, asProtocol(err))
		return
	}
	writeJSON(w, http.StatusOK, protocol.Empty{})
}

// room authorizes the request for {room} and finds it.
func (a *API) room(w http.ResponseWriter, r *http.Request) (*room.Room, bool) {
	name := r.PathValue("room")
	if _, ok := a.authorize(w, r, name, false); !ok {
		return nil, false
	}
	rm := a.opts.Rooms.Room(name)
	if rm == nil {
		writeError(w, protocol.Errorf(protocol.CodeNotFound, "no room %q", name))
		return nil, false
	}
	return rm, true
}

// participant authorizes the request for {room} and finds participant {id}.
func (a *API) participant(w http.ResponseWriter, r *http.Request) (*room.Participant, bool) {
	rm, ok := a.room(w, r)
	if !ok {
		return nil, false
	}
	id := r.PathValue("id")
	p := rm.Participant(id)
	if p == nil {
		writeError(w, protocol.Errorf(protocol.CodeNotFound, "no participant %q in room %q", id, rm.Name()))
		return nil, false
	}
	return p, true
}

// authorize checks the bearer token (with keys) or the client address
// (without). list is true for GET /v1/rooms, which a room-scoped admin token
// may call (it then sees its room only). claims is nil on an open server.
func (a *API) authorize(w http.ResponseWriter, r *http.Request, roomName string, list bool) (*auth.Claims, bool) {
	if a.opts.CheckOrigin != nil && !a.opts.CheckOrigin(r) {
		writeError(w, protocol.Errorf(protocol.CodeForbidden, "requests from the web page of %s are not allowed (http.allowed_origins)", r.Header.Get("Origin")))
		return nil, false
	}
	if !a.opts.Auth.Enabled() {
		if !isLoopback(r.RemoteAddr) {
			writeError(w, protocol.Errorf(protocol.CodeForbidden,
				"the admin API is only served to loopback clients while the server has no API keys"))
			return nil, false
		}
		return nil, true
	}
	tok, ok := bearer(r)
	if !ok {
		w.Header().Set("WWW-Authenticate", `Bearer realm="starling"`)
		writeError(w, protocol.Errorf(protocol.CodeUnauthorized, `token required: send "Authorization: Bearer <admin token>"`))
		return nil, false
	}
	claims, perr := a.opts.Auth.Verify(tok)
	if perr != nil {
		w.Header().Set("WWW-Authenticate", `Bearer realm="starling", error="invalid_token"`)
		writeError(w, perr)
		return nil, false
	}
	check := roomName
	if list && claims.Grants.Room != "" {
		check = claims.Grants.Room
	}
	if perr := claims.CanAdmin(check); perr != nil {
		writeError(w, perr)
		return nil, false
	}
	return claims, true
}

func bearer(r *http.Request) (string, bool) {
	h := r.Header.Get("Authorization")
	scheme, tok, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	tok = strings.TrimSpace(tok)
	return tok, tok != ""
}

func isLoopback(remote string) bool {
	host, _, err := net.SplitHostPort(remote)
	if err != nil {
		host = remote
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.Unmap().IsLoopback()
}

func asProtocol(err error) *protocol.Error {
	var pe *protocol.Error
	if errors.As(err, &pe) {
		return pe
	}
	return protocol.Errorf(protocol.CodeInternal, "internal error")
}

// HTTPStatus maps a protocol error code to an HTTP status.
func HTTPStatus(code int) int {
	switch code {
	case protocol.CodeUnauthorized, protocol.CodeForbidden, protocol.CodeNotFound, protocol.CodeConflict,
		protocol.CodeTooLarge, protocol.CodeRateLimited, protocol.CodeInternal, protocol.CodeUnavailable:
		return code
	case protocol.CodeParseError, protocol.CodeInvalidRequest, protocol.CodeInvalidParams:
		return http.StatusBadRequest
	case protocol.CodeMethodNotFound:
		return http.StatusNotFound
	}
	return http.StatusInternalServerError
}

func writeError(w http.ResponseWriter, e *protocol.Error) {
	writeJSON(w, HTTPStatus(e.Code), e)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
}

// listNodes is GET /v1/nodes: the cluster's live nodes with their load
// (any admin token; a room-scoped one is refused).
func (a *API) listNodes(w http.ResponseWriter, r *http.Request) {
	if _, ok := a.authorize(w, r, "", false); !ok { // room-scoped tokens are refused
		return
	}
	var nodes any = []map[string]any{{"id": "local", "self": true}}
	if a.opts.Nodes != nil {
		nodes = a.opts.Nodes()
	}
	writeJSON(w, http.StatusOK, map[string]any{"nodes": nodes})
}
