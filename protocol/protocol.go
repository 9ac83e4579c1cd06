// Package protocol holds the wire types of Starling's signaling protocol
// (docs/PROTOCOL.md): JSON-RPC 2.0 envelopes, error codes, method names,
// parameter and result objects. It is a leaf package so the server, the room
// logic and the Go client agree on one definition.
package protocol

import (
	"encoding/json"
	"fmt"

	"github.com/pion/webrtc/v4"
)

// Version is the protocol version this package describes.
const Version = 1

// JSON-RPC 2.0 and application error codes.
const (
	CodeParseError     = -32700
	CodeInvalidRequest = -32600
	CodeMethodNotFound = -32601
	CodeInvalidParams  = -32602
	CodeUnauthorized   = 401
	CodeForbidden      = 403
	CodeNotFound       = 404
	CodeConflict       = 409
	CodeTooLarge       = 413
	CodeRateLimited    = 429
	CodeInternal       = 500
	CodeUnavailable    = 503 // try again shortly (e.g. a resume while the old node lets go)
)

// Client → server methods.
const (
	MethodJoin            = "join"
	MethodOffer           = "offer"
	MethodAnswer          = "answer"
	MethodCandidate       = "candidate"
	MethodSubscribe       = "subscribe"
	MethodUnsubscribe     = "unsubscribe"
	MethodSetSubscription = "setSubscription"
	MethodMute            = "mute"
	MethodUnpublish       = "unpublish"
	MethodLeave           = "leave"
	MethodPing            = "ping"
	// MethodSetAudioMix switches the participant between the room's live
	// audio mix and the other participants' individual audio tracks.
	MethodSetAudioMix = "setAudioMix"
)

// Server → client notifications (offer, candidate and leave share the names above).
const (
	NotifyParticipantJoined   = "participantJoined"
	NotifyParticipantUpdated  = "participantUpdated"
	NotifyParticipantLeft     = "participantLeft"
	NotifyTrackPublished      = "trackPublished"
	NotifyTrackUpdated        = "trackUpdated"
	NotifyTrackUnpublished    = "trackUnpublished"
	NotifySubscriptionUpdated = "subscriptionUpdated"
	NotifyPublishLayers       = "publishLayers"
	NotifyActiveSpeakers      = "activeSpeakers"
)

// Leave reasons sent in `leave` and `participantLeft`.
const (
	ReasonClientLeave    = "clientLeave"
	ReasonDuplicate      = "duplicate"
	ReasonServerShutdown = "serverShutdown"
	ReasonRoomClosed     = "roomClosed"
	ReasonKicked         = "kicked"
	ReasonDisconnected   = "disconnected"
	ReasonNegotiation    = "negotiationTimeout"
	// ReasonRoomFull: in a cluster, a participant whose node was cut off
	// from the others came back to a room that others had filled meanwhile
	// (docs/cluster.md "Write-back after a cut").
	ReasonRoomFull = "roomFull"
)

// Peer connection targets in `candidate`.
const (
	TargetPublisher  = "publisher"
	TargetSubscriber = "subscriber"
)

// Track sources.
const (
	SourceCamera      = "camera"
	SourceMicrophone  = "microphone"
	SourceScreen      = "screen"
	SourceScreenAudio = "screen_audio"
	SourceUnknown     = "unknown"
	// SourceMix is the room's live audio mix, announced only to the
	// participant who receives it.
	SourceMix = "mix"
)

// Simulcast qualities; Paused is only used in subscriptionUpdated.
const (
	QualityLow    = "low"
	QualityMedium = "medium"
	QualityHigh   = "high"
	QualityPaused = "paused"
)

// Message is one JSON-RPC 2.0 object: a request (ID and Method), a
// notification (Method only) or a response (ID and Result or Error).
type Message struct {
	JSONRPC string          `json:"jsonrpc"`
	ID      json.RawMessage `json:"id,omitempty"`
	Method  string          `json:"method,omitempty"`
	Params  json.RawMessage `json:"params,omitempty"`
	Result  json.RawMessage `json:"result,omitempty"`
	Error   *Error          `json:"error,omitempty"`
}

// Error is a JSON-RPC error object; it also implements error so the room
// layer can return protocol errors directly.
type Error struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
}

func (e *Error) Error() string { return fmt.Sprintf("%d: %s", e.Code, e.Message) }

// Errorf builds an *Error with a formatted message.
func Errorf(code int, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// Participant is the public view of a participant.
type Participant struct {
	ID       string  `json:"id"`
	Name     string  `json:"name"`
	Metadata string  `json:"metadata"`
	JoinedAt int64   `json:"joinedAt"` // Unix milliseconds
	Tracks   []Track `json:"tracks"`
}

// Track is the public view of a published track.
type Track struct {
	ID            string  `json:"id"`
	CID           string  `json:"cid,omitempty"`
	ParticipantID string  `json:"participantId"`
	Kind          string  `json:"kind"`
	Source        string  `json:"source"`
	Name          string  `json:"name"`
	Muted         bool    `json:"muted"`
	Codec         string  `json:"codec"`
	Simulcast     bool    `json:"simulcast"`
	Layers        []Layer `json:"layers"`
}

// Layer describes one simulcast encoding of a video track.
type Layer struct {
	Quality string `json:"quality"`
	RID     string `json:"rid"`
	Width   int    `json:"width"`
	Height  int    `json:"height"`
	Active  bool   `json:"active"`
}

// Room identifies a room in the join result.
type Room struct {
	Name string `json:"name"`
	SID  string `json:"sid"`
}

// JoinParams are the params of `join`.
type JoinParams struct {
	Room          string `json:"room"`
	Name          string `json:"name,omitempty"`
	Token         string `json:"token,omitempty"`
	Metadata      string `json:"metadata,omitempty"`
	AutoSubscribe *bool  `json:"autoSubscribe,omitempty"`
	Resume        string `json:"resume,omitempty"`
	// AudioMix: receive the room's audio as one mixed track instead of
	// every participant's (see setAudioMix).
	AudioMix bool `json:"audioMix,omitempty"`
	// Subscriptions, with Resume: what the client asked of its
	// subscriptions, for a node that takes the participant over from a
	// dead or draining node (whose state is gone). Ignored otherwise.
	Subscriptions *ResumeSubscriptions `json:"subscriptions,omitempty"`
}

// ResumeSubscriptions is what a client asked of its subscriptions since it
// joined, folded: the tracks it subscribed to and unsubscribed from by
// request (the latest request for a track wins) and its latest
// setSubscription per track (fields merged as the server merges them).
// A node taking the participant over subscribes it to autoSubscribe's
// tracks minus Unsubscribed plus Subscribed, with Settings applied before
// the first offer. Tracks that no longer exist are skipped.
type ResumeSubscriptions struct {
	Subscribed   []string                `json:"subscribed,omitempty"`
	Unsubscribed []string                `json:"unsubscribed,omitempty"`
	Settings     []SetSubscriptionParams `json:"settings,omitempty"`
}

// SetAudioMixParams are the params of `setAudioMix`.
type SetAudioMixParams struct {
	Enabled *bool `json:"enabled"`
}

// JoinResult is the result of `join`.
type JoinResult struct {
	Participant  Participant        `json:"participant"`
	Room         Room               `json:"room"`
	Participants []Participant      `json:"participants"`
	ICEServers   []webrtc.ICEServer `json:"iceServers"`
	ResumeToken  string             `json:"resumeToken"`
	// NewConnections is set on a resume through another node than the one
	// that held the participant's peer connections (a cluster after a node
	// failed or drained): the DTLS peer is new, so the client drops both
	// connections and sets up new ones, announcing its tracks again in the
	// new publisher offer (docs/PROTOCOL.md "Resume through another node").
	NewConnections bool `json:"newConnections,omitempty"`
}

// TrackAnnouncement links a track in a publisher offer's SDP (by its msid
// track id) to its metadata.
type TrackAnnouncement struct {
	TrackID string      `json:"trackId"`
	Source  string      `json:"source"`
	Name    string      `json:"name,omitempty"`
	Layers  []LayerHint `json:"layers,omitempty"`
}

// LayerHint is what a publisher says about one of its simulcast encodings.
type LayerHint struct {
	RID    string `json:"rid"`
	Width  int    `json:"width"`
	Height int    `json:"height"`
}

// OfferParams are the params of the client's publisher `offer` request.
type OfferParams struct {
	SDP    string              `json:"sdp"`
	Tracks []TrackAnnouncement `json:"tracks"`
}

// OfferResult is the answer to a publisher offer.
type OfferResult struct {
	SDP    string  `json:"sdp"`
	Tracks []Track `json:"tracks"`
}

// TrackIDsParams are the params of `subscribe` and `unsubscribe`.
type TrackIDsParams struct {
	TrackIDs []string `json:"trackIds"`
}

// SetSubscriptionParams are the params of `setSubscription`; nil fields keep
// their previous values.
type SetSubscriptionParams struct {
	TrackID   string  `json:"trackId"`
	Paused    *bool   `json:"paused,omitempty"`
	MaxWidth  *int    `json:"maxWidth,omitempty"`
	MaxHeight *int    `json:"maxHeight,omitempty"`
	Quality   *string `json:"quality,omitempty"`
}

// Over returns s with every field s leaves out (nil) taken from old: a
// `setSubscription` changes only what it names.
func (s SetSubscriptionParams) Over(old SetSubscriptionParams) SetSubscriptionParams {
	if s.Paused == nil {
		s.Paused = old.Paused
	}
	if s.MaxWidth == nil {
		s.MaxWidth = old.MaxWidth
	}
	if s.MaxHeight == nil {
		s.MaxHeight = old.MaxHeight
	}
	if s.Quality == nil {
		s.Quality = old.Quality
	}
	return s
}

// MuteParams are the params of `mute`.
type MuteParams struct {
	TrackID string `json:"trackId"`
	Muted   bool   `json:"muted"`
}

// UnpublishParams are the params of `unpublish`.
type UnpublishParams struct {
	TrackID string `json:"trackId"`
}

// Empty is the `{}` params and result.
type Empty struct{}

// SDPParams carry one SDP: the client's `answer` and the server's `offer` notification.
type SDPParams struct {
	SDP string `json:"sdp"`
}

// CandidateParams are the params of `candidate` in both directions. A nil
// Candidate means end of candidates.
type CandidateParams struct {
	Target    string                   `json:"target"`
	Candidate *webrtc.ICECandidateInit `json:"candidate"`
}

// ParticipantParams are the params of participantJoined and participantUpdated.
type ParticipantParams struct {
	Participant Participant `json:"participant"`
}

// ParticipantLeftParams are the params of participantLeft.
type ParticipantLeftParams struct {
	ParticipantID string `json:"participantId"`
	Reason        string `json:"reason"`
}

// TrackParams are the params of trackPublished and trackUpdated.
type TrackParams struct {
	Track Track `json:"track"`
}

// TrackUnpublishedParams are the params of trackUnpublished.
type TrackUnpublishedParams struct {
	TrackID       string `json:"trackId"`
	ParticipantID string `json:"participantId"`
}

// SubscriptionUpdatedParams say which layer a subscriber gets now and why.
type SubscriptionUpdatedParams struct {
	TrackID string `json:"trackId"`
	Layer   string `json:"layer"`
	Reason  string `json:"reason,omitempty"`
}

// PublishLayersParams tell a publisher which encodings some subscriber needs.
type PublishLayersParams struct {
	TrackID string   `json:"trackId"`
	Active  []string `json:"active"`
}

// Speaker is one entry of activeSpeakers.
type Speaker struct {
	ParticipantID string  `json:"participantId"`
	Level         float64 `json:"level"`
}

// ActiveSpeakersParams are the params of activeSpeakers.
type ActiveSpeakersParams struct {
	Speakers []Speaker `json:"speakers"`
}

// LeaveParams are the params of the server's `leave` notification.
type LeaveParams struct {
	Reason string `json:"reason"`
}

// DataMessage is what a subscriber receives on its `data` channel.
type DataMessage struct {
	From    string `json:"from"`
	Payload string `json:"payload"`
}

// MaxDataMessage is the largest data message relayed, in bytes.
const MaxDataMessage = 16 << 10

// DataChannelLabel is the label of the data channel on both connections.
const DataChannelLabel = "data"
