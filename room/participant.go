package room

import (
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/pion/webrtc/v4"
	"github.com/starling-rtc/starling/protocol"
	"github.com/starling-rtc/starling/sfu"
)

// Participant is one joined client: its two peer connections, the tracks it
// publishes and the tracks it receives.
type Participant struct {
	m *Manager
	// Trickled candidates follow the description they belong to (candidates.go).
	pubCandidates candidateGate
	subCandidates candidateGate
	room          *Room
	log           *slog.Logger
	peer          Peer
	node          string                        // "" = connected here; else the node of a remote stub (remote.go)
	takenOver     bool                          // resumed here after its node died: Resumed starts it afresh (takeover.go)
	tookOverWith  string                        // hash of the token that takeover consumed (takeover.go)
	heard         atomic.Bool                   // the client sent offer, answer or candidate: it has its join result
	restore       *protocol.ResumeSubscriptions // subscriptions a takeover restores at Start (restore.go)
	carry         map[string]carried            // track ids kept from its old node, by client track id (handover.go); under mu
	movedFrom     string                        // the node it was taken over from (handover.go)
	settledSent   atomic.Bool                   // that node was told its connections here are up
	settled       atomic.Int64                  // released while draining: when its new node said its connections are up (clock.Nanos)
	// restorePending: what restore asks of tracks not known here yet;
	// owned by the subscriber loop.
	restorePending map[string]*restoreEntry
	id             string
	identity       string
	name           string
	metadata       string
	joinedAt       time.Time
	resumeToken    string
	moving         bool // under mu: released to another node, leaves silently (failover.go)
	lingering      bool // under mu: released by a draining node, its media goes on for a while (handover.go)
	autoSubscribe  bool
	answering      bool       // see JoinRequest.Answering and answer.go
	wantMix        bool       // join asked for the audio mix
	audioMix       bool       // receives the mix (mix.go); under mu
	mixMu          sync.Mutex // serialises SetAudioMix and leaveMix (mix.go)

	pub *sfu.Publisher
	sub *sfu.Subscriber

	pubMu sync.Mutex // serialises publisher offers

	mu     sync.Mutex
	tracks map[string]*Track // published, by server id
	byCID  map[string]*Track // published, by the client's msid track id
	// withdrawn: client track ids unpublished by request that its SDP
	// still sends (withdrawn.go).
	withdrawn map[string]bool
	closed    bool
	perms     Permissions // see permissions.go
	// startBy: tracks of its latest offer may still be starting until then
	// (siblingsStarting): startWindow after the offer, and again after
	// each of its tracks starts.
	startBy time.Time

	loop subscriberLoop // owns the subscriber connection
	rs   resumeState    // see resume.go
}

func newParticipant(m *Manager, r *Room, req JoinRequest, peer Peer) (*Participant, error) {
	p := &Participant{
		m: m, room: r, peer: peer, id: req.id, identity: req.Identity,
		name: req.Name, metadata: req.Metadata, joinedAt: time.Now(),
		resumeToken: req.token, autoSubscribe: req.AutoSubscribe, wantMix: req.AudioMix,
		answering: req.Answering,
		tracks:    map[string]*Track{}, byCID: map[string]*Track{}, perms: AllPermissions,
	}
	if !req.joinedAt.IsZero() {
		p.joinedAt = req.joinedAt
	}
	if p.id == "" {
		p.id = newID("PA_")
	}
	if p.resumeToken == "" {
		p.resumeToken = newResumeToken()
	}
	p.takenOver, p.tookOverWith, p.restore, p.carry = req.takeover, req.takeoverHash, req.restore, req.carry
	p.movedFrom = req.movedFrom
	for _, cid := range req.withdrawn {
		p.withdraw(cid)
	}
	if req.Permissions != nil {
		p.perms = *req.Permissions
	}
	p.peer = p.rs.init(peer, p.resumeToken)
	if p.identity == "" {
		p.identity = p.id
	}
	p.log = m.log.With("room", r.name, "participant", p.id)
	var err error
	p.pub, err = sfu.NewPublisher(m.cfg.Engine, m.cfg.ICEServers, p.onTrack, p.onData)
	if err != nil {
		return nil, err
	}
	p.sub, err = sfu.NewSubscriber(m.cfg.Engine, m.cfg.ICEServers)
	if err != nil {
		_ = p.pub.Close()
		return nil, err
	}
	p.pubCandidates.target, p.subCandidates.target = protocol.TargetPublisher, protocol.TargetSubscriber
	p.pub.OnCandidate(func(c *webrtc.ICECandidateInit) { p.pubCandidates.candidate(p, c) })
	p.sub.OnCandidate(func(c *webrtc.ICECandidateInit) { p.subCandidates.candidate(p, c) })
	p.pub.OnFailed(func() { go p.mediaFailed("publisher", p.pub.Failure()) }) // see resume.go
	p.sub.OnFailed(func() { go p.mediaFailed("subscriber", p.sub.Failure()) })
	p.loop.init(p)
	return p, nil
}

// ID is the participant id.
func (p *Participant) ID() string { return p.id }

// Identity is the participant's identity (token sub, or its id).
func (p *Participant) Identity() string { return p.identity }

// Room is the participant's room.
func (p *Participant) Room() *Room { return p.room }

// Start begins subscriber negotiation: call it after the join result is sent
// so the first `offer` follows it.
func (p *Participant) Start() {
	if p.wantMix {
		if err := p.SetAudioMix(true); err != nil {
			p.log.Info("audio mix refused at join", "err", err)
		}
	}
	p.loop.post(func() {
		p.loop.started = true
		if p.restore != nil {
			p.restoreSubscriptions() // restore.go
		} else if p.autoSubscribe {
			for _, t := range p.room.publishedTracks(p) {
				p.loop.addDownTrack(t)
			}
		}
		p.loop.dirty = true // the first offer carries the data channel even with no tracks
	})
}

// Info is the participant's public view.
func (p *Participant) Info() protocol.Participant {
	p.mu.Lock()
	tracks := make([]*Track, 0, len(p.tracks))
	for _, t := range p.tracks {
		tracks = append(tracks, t)
	}
	// One order, whichever node describes the participant and however
	// often (a map's order changed from one answer to the next, and the
	// admin API of two nodes disagreed): by track id.
	slices.SortFunc(tracks, func(a, b *Track) int { return strings.Compare(a.id, b.id) })
	info := protocol.Participant{
		ID: p.id, Name: p.name, Metadata: p.metadata, JoinedAt: p.joinedAt.UnixMilli(), Tracks: []protocol.Track{},
	}
	p.mu.Unlock()
	for _, t := range tracks {
		t.mu.Lock()
		visible := t.visible
		t.mu.Unlock()
		if visible {
			info.Tracks = append(info.Tracks, t.Info())
		}
	}
	return info
}

// HandleOffer applies a publisher offer and returns the answer with the
// tracks it publishes.
func (p *Participant) HandleOffer(params protocol.OfferParams) (*protocol.OfferResult, error) {
	p.heard.Store(true)
	p.pubMu.Lock()
	defer p.pubMu.Unlock()
	offered, err := sfu.ParseOffer(params.SDP)
	if sfu.Refused(err) {
		return nil, protocol.Errorf(protocol.CodeInvalidParams, "invalid params: sdp: %v", err)
	}
	if err != nil {
		return nil, protocol.Errorf(protocol.CodeInvalidParams, "invalid params: sdp does not parse: %v", err)
	}
	if err := p.checkPublish(len(offered)); err != nil {
		return nil, err
	}
	anns := map[string]protocol.TrackAnnouncement{}
	for _, a := range params.Tracks {
		anns[a.TrackID] = a
	}
	inSDP := map[string]bool{}
	for _, o := range offered {
		inSDP[o.TrackID] = true
	}
	for _, a := range params.Tracks {
		if !inSDP[a.TrackID] {
			return nil, protocol.Errorf(protocol.CodeInvalidParams,
				"invalid params: track %q is not sent by any media section of the sdp", a.TrackID)
		}
	}
	if err := p.checkWithdrawn(params.Tracks); err != nil {
		return nil, err
	}
	answer, err := p.answerPublisher(params.SDP)
	if err != nil {
		return nil, protocol.Errorf(protocol.CodeInvalidParams, "invalid params: %v", err)
	}

	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil, protocol.Errorf(protocol.CodeConflict, "participant has left")
	}
	result := &protocol.OfferResult{SDP: answer, Tracks: []protocol.Track{}}
	current := map[string]bool{}
	var added []*Track
	forgot := p.forgetWithdrawn(inSDP)
	for _, o := range offered {
		if p.withdrawn[o.TrackID] {
			continue
		}
		current[o.TrackID] = true
		t := p.byCID[o.TrackID]
		if t == nil {
			t = newTrack(p, o, anns[o.TrackID])
			if c, ok := p.carry[o.TrackID]; ok && c.kind == t.info.Kind {
				delete(p.carry, o.TrackID)
				t.id, t.info.ID = c.id, c.id // the same track, moved here (handover.go)
				t.carried = true
			}
			if c, ok := p.pub.NegotiatedCodec(o.MID); ok {
				t.info.Codec = sfu.CanonicalMimeType(c.MimeType)
			}
			p.tracks[t.id] = t
			p.byCID[o.TrackID] = t
			p.startBy = time.Now().Add(startWindow)
		}
		added = append(added, t)
	}
	var removed []*Track
	for cid, t := range p.byCID {
		if !current[cid] {
			removed = append(removed, t)
			delete(p.byCID, cid)
			delete(p.tracks, t.id)
		}
	}
	p.mu.Unlock()
	if forgot {
		p.storeMember()
	}
	for _, t := range added {
		result.Tracks = append(result.Tracks, t.Info())
	}
	for _, t := range removed {
		p.dropTrack(t)
	}
	return result, nil
}

// startWindow bounds how long a subscriber offer waits for the other new
// tracks of the same publisher offer to start (siblingsStarting), from the
// offer or from the latest of them to start.
const startWindow = 500 * time.Millisecond

// siblingsStarting returns until when a subscriber offer that adds one of
// this participant's tracks should wait for the others: the tracks of one
// publisher offer (a camera's audio and video) start with their first
// packets, tens to hundreds of ms apart, and one offer for all of them
// saves the subscriber a renegotiation (and ~1.5 kB of signaling) each.
// Zero when none of its tracks is still due to start.
func (p *Participant) siblingsStarting() time.Time {
	p.mu.Lock()
	until := p.startBy
	if until.IsZero() || time.Now().After(until) {
		p.mu.Unlock()
		return time.Time{}
	}
	tracks := slices.Collect(maps.Values(p.tracks))
	p.mu.Unlock()
	for _, t := range tracks {
		t.mu.Lock()
		pending := t.receiver == nil && !t.visible
		t.mu.Unlock()
		if pending {
			return until
		}
	}
	return time.Time{}
}

// onTrack attaches an incoming encoding to its announced track.
func (p *Participant) onTrack(remote *webrtc.TrackRemote, recv *webrtc.RTPReceiver) {
	p.mu.Lock()
	t := p.byCID[remote.ID()]
	closed := p.closed
	p.mu.Unlock()
	if t == nil || closed {
		p.log.Warn("incoming track not announced in an offer", "msid", remote.ID(), "rid", remote.RID())
		return
	}
	idx := t.layerOf(remote.RID())
	if idx < 0 {
		p.log.Warn("unknown simulcast rid", "track", t.id, "rid", remote.RID())
		return
	}
	t.mu.Lock()
	first := t.receiver == nil
	if first {
		t.receiver = sfu.NewReceiver(t.id, remote.Codec(), remote.Kind(), p.pub.WriteRTCP, p.log.With("track", t.id))
		t.receiver.OnLayersChanged(func(uint8) { p.room.layersChanged(t) })
		// A sink that is not a subscription (a recording) changes what the
		// publisher must send too.
		t.receiver.OnSinksChanged(t.dynacast)
		t.receiver.SetMuted(t.info.Muted)
		t.info.Codec = sfu.CanonicalMimeType(remote.Codec().MimeType)
		t.visible = true
	}
	r := t.receiver
	t.mu.Unlock()
	r.AddLayer(idx, remote, recv)
	if first {
		// The offer's other tracks start on the same connection, so
		// shortly after this one: the window for them counts from here
		// too. Counted from the offer alone, it had often passed before
		// the first packet on a busy machine (the connection took longer
		// to come up), and a camera's audio and video reached each
		// subscriber in two offers.
		p.mu.Lock()
		p.startBy = time.Now().Add(startWindow)
		p.mu.Unlock()
		p.room.publish(t)
	} else {
		p.room.trackUpdated(t)
	}
}

// onData relays a text message from the publisher's data channel.
func (p *Participant) onData(text []byte) {
	if !p.Permissions().CanPublishData {
		p.log.Debug("data message dropped: no canPublishData grant", "bytes", len(text))
		return
	}
	if len(text) > p.m.maxDataMessage() || !utf8.Valid(text) {
		p.log.Debug("data message dropped", "bytes", len(text))
		return
	}
	p.room.relayData(p, text)
}

func (p *Participant) sendData(msg []byte) {
	if err := p.sub.SendData(msg); err != nil {
		p.log.Debug("data message not delivered", "err", err)
	}
}

// HandleAnswer applies the client's answer to the pending subscriber offer.
func (p *Participant) HandleAnswer(sdp string) error {
	p.heard.Store(true)
	return p.loop.do(func() error { return p.loop.answer(sdp) })
}

// HandleCandidate adds a client's ICE candidate to one of its connections.
func (p *Participant) HandleCandidate(params protocol.CandidateParams) error {
	p.heard.Store(true)
	var err error
	switch params.Target {
	case protocol.TargetPublisher:
		err = p.pub.AddCandidate(params.Candidate)
	case protocol.TargetSubscriber:
		err = p.sub.AddCandidate(params.Candidate)
	default:
		return protocol.Errorf(protocol.CodeInvalidParams, `invalid params: target must be "publisher" or "subscriber"`)
	}
	if err != nil {
		return protocol.Errorf(protocol.CodeInvalidParams, "invalid params: %v", err)
	}
	return nil
}

// Subscribe subscribes to tracks by id; unknown ids fail the whole request.
func (p *Participant) Subscribe(ids []string) error {
	tracks := make([]*Track, 0, len(ids))
	for _, id := range ids {
		t := p.room.track(id)
		if t == nil {
			return protocol.Errorf(protocol.CodeNotFound, "unknown track %q", id)
		}
		if t.owner == p {
			return protocol.Errorf(protocol.CodeConflict, "track %q is your own", id)
		}
		tracks = append(tracks, t)
	}
	// Ids are resolved in the caller's room first: another room's track is
	// unknown (404), whatever the grants.
	if err := p.checkSubscribe(ids); err != nil {
		return err
	}
	for _, t := range tracks {
		p.subscribeTrack(t)
	}
	return nil
}

// Unsubscribe stops receiving tracks by id.
func (p *Participant) Unsubscribe(ids []string) error {
	for _, id := range ids {
		if p.room.track(id) == nil && !p.loop.subscribed(id) {
			return protocol.Errorf(protocol.CodeNotFound, "unknown track %q", id)
		}
	}
	for _, id := range ids {
		p.unsubscribeTrack(id)
	}
	return nil
}

// SetSubscription changes what the participant receives of one track.
func (p *Participant) SetSubscription(s protocol.SetSubscriptionParams) error {
	t, err := p.subscriptionTarget(s)
	if err != nil {
		return err
	}
	p.loop.post(func() { p.loop.setSubscription(t, s) })
	return nil
}

// subscriptionTarget checks a setSubscription and returns its track.
func (p *Participant) subscriptionTarget(s protocol.SetSubscriptionParams) (*Track, error) {
	t := p.room.track(s.TrackID)
	if t == nil {
		return nil, protocol.Errorf(protocol.CodeNotFound, "unknown track %q", s.TrackID)
	}
	if t.owner == p {
		return nil, protocol.Errorf(protocol.CodeConflict, "track %q is your own", s.TrackID)
	}
	if !p.Permissions().CanSubscribe {
		return nil, protocol.Errorf(protocol.CodeForbidden, "not allowed to subscribe: the token lacks canSubscribe")
	}
	if s.Quality != nil {
		switch *s.Quality {
		case protocol.QualityLow, protocol.QualityMedium, protocol.QualityHigh:
		default:
			return nil, protocol.Errorf(protocol.CodeInvalidParams, `invalid params: quality must be "low", "medium" or "high"`)
		}
	}
	if (s.MaxWidth != nil && *s.MaxWidth < 0) || (s.MaxHeight != nil && *s.MaxHeight < 0) {
		return nil, protocol.Errorf(protocol.CodeInvalidParams, "invalid params: maxWidth and maxHeight must be >= 0")
	}
	return t, nil
}

// Mute sets a published track's muted flag and tells the room.
func (p *Participant) Mute(trackID string, muted bool) error {
	p.mu.Lock()
	t := p.tracks[trackID]
	p.mu.Unlock()
	if t == nil {
		return p.notYours(trackID)
	}
	t.mu.Lock()
	changed := t.info.Muted != muted
	t.info.Muted = muted
	if t.receiver != nil {
		t.receiver.SetMuted(muted)
	}
	t.mu.Unlock()
	if changed {
		p.room.trackUpdated(t)
		p.room.muteChanged(t) // see admin.go
	}
	return nil
}

// Unpublish stops publishing a track; subscribers lose it at once.
func (p *Participant) Unpublish(trackID string) error {
	p.mu.Lock()
	t := p.tracks[trackID]
	if t != nil {
		delete(p.tracks, trackID)
		delete(p.byCID, t.info.CID)
		p.withdraw(t.info.CID)
	}
	p.mu.Unlock()
	if t == nil {
		return p.notYours(trackID)
	}
	p.storeMember()
	p.dropTrack(t)
	return nil
}

func (p *Participant) dropTrack(t *Track) {
	p.room.unpublish(t)
	t.mu.Lock()
	r := t.receiver
	t.mu.Unlock()
	if r != nil {
		r.Close()
	}
}

// subscribeTrack queues a subscription; safe under the room's lock.
func (p *Participant) subscribeTrack(t *Track) {
	p.loop.post(func() { p.loop.addDownTrack(t) })
}

// unsubscribeTrack queues an unsubscription; safe under the room's lock.
func (p *Participant) unsubscribeTrack(id string) {
	p.loop.post(func() { p.loop.removeDownTrack(id) })
}

// Leave is the client's own `leave`: the caller closes the socket after the reply.
func (p *Participant) Leave() { p.close(protocol.ReasonClientLeave, false) }

// Disconnected is called when the signaling socket is gone.
func (p *Participant) Disconnected() { p.close(protocol.ReasonDisconnected, false) }

// close removes the participant everywhere and releases its connections;
// notify sends the client `leave` with the reason. Idempotent; never blocks
// on the participant's own goroutines.
func (p *Participant) close(reason string, notify bool) {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	tracks := make([]*Track, 0, len(p.tracks))
	for _, t := range p.tracks {
		tracks = append(tracks, t)
	}
	linger := p.lingering
	p.mu.Unlock()
	p.log.Info("participant left", "reason", reason)
	for _, t := range tracks {
		if linger {
			p.room.detachLingering(t) // handover.go
		} else {
			p.dropTrack(t)
		}
	}
	p.leaveMix()
	p.room.remove(p, reason)
	if notify {
		p.peer.End(reason)
	}
	if linger {
		p.m.handingOver.Add(1)
		p.m.trackReleased(p, true)
	}
	go func() {
		defer p.m.wg.Done()
		if linger {
			// Released by a draining node: its media goes on to the other
			// nodes until they take it from its new node (handover.go).
			p.linger(tracks)
			p.m.trackReleased(p, false)
			p.m.handingOver.Add(-1)
		}
		p.loop.stop()
		p.closeConns()
		for _, t := range tracks {
			t.mu.Lock()
			r := t.receiver
			t.mu.Unlock()
			if r != nil {
				r.Wait()
			}
		}
	}()
}

// closeConns closes both peer connections.
func (p *Participant) closeConns() {
	_ = p.pub.Close()
	_ = p.sub.Close()
}
