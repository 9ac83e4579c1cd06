package room

import (
	"sort"
	"sync"
	"time"

	"github.com/pion/webrtc/v4"
	"github.com/starling-rtc/starling/protocol"
	"github.com/starling-rtc/starling/sfu"
)

// subscriberLoop is the one goroutine that owns a participant's subscriber
// connection: subscriptions change and offers are made only here. Changes
// queued together become one offer, and only one offer is in flight: the
// server is the only offerer on this connection, so there is no glare.
type subscriberLoop struct {
	p *Participant

	qmu   sync.Mutex
	queue []func()
	spare []func() // the last drained queue's array, reused by the next (run)
	wake  chan struct{}
	quit  chan struct{}
	done  chan struct{}
	once  sync.Once

	// Owned by the loop goroutine.
	started bool
	dirty   bool // a change awaits an offer
	dirtyAt time.Time
	delayed bool // a wake-up for a delayed offer is armed
	// Publishers of tracks added since the last offer, whose other new
	// tracks that offer may wait for (Participant.siblingsStarting).
	starting map[*Participant]bool
	// First answer applied, and a wake-up for holdUntilConnected armed.
	answeredAt time.Time
	connWait   bool
	connTimer  *time.Timer // its wake-up; stopped by release (armed up to connectGrace, it held a participant that long after its leave)
	inFlight   bool        // an offer awaits its answer
	offeredTo  Peer        // the session the offer in flight went to (resume)
	gen        int         // counts offers, to match timeouts to them
	timer      *time.Timer
	down       map[string]*sfu.DownTrack
	prefs      map[string]protocol.SetSubscriptionParams     // per track, kept across resubscribes
	sent       map[string]protocol.SubscriptionUpdatedParams // last subscriptionUpdated per track
	tracks     map[string]*Track                             // subscribed tracks, by id
	alloc      allocState
	rs         loopResume // see resume.go
	mix        loopMix    // see mix.go
	subsMu     sync.Mutex
	subsSeen   map[string]bool         // track ids subscribed, readable from other goroutines
	subsDown   map[string]subscription // their down tracks, for stats; under subsMu
}

func (l *subscriberLoop) init(p *Participant) {
	l.p = p
	l.wake = make(chan struct{}, 1)
	l.quit = make(chan struct{})
	l.done = make(chan struct{})
	l.down = map[string]*sfu.DownTrack{}
	l.prefs = map[string]protocol.SetSubscriptionParams{}
	l.sent = map[string]protocol.SubscriptionUpdatedParams{}
	l.tracks = map[string]*Track{}
	l.subsSeen = map[string]bool{}
	l.subsDown = map[string]subscription{}
	go l.run()
	allocate := l.allocate // bound once: a method value per change would be an allocation
	l.p.sub.OnEstimateChanged(func() { l.post(allocate) })
	l.p.sub.OnConnected(func() {
		l.post(func() {})  // a held offer goes out (offerDue)
		l.p.subscriberUp() // handover.go
	})
	go l.tickAllocations()
}

// post queues f to run on the loop; it never blocks.
func (l *subscriberLoop) post(f func()) {
	l.qmu.Lock()
	l.queue = append(l.queue, f)
	l.qmu.Unlock()
	select {
	case l.wake <- struct{}{}:
	default:
	}
}

// do runs f on the loop and returns its error.
func (l *subscriberLoop) do(f func() error) error {
	res := make(chan error, 1)
	l.post(func() { res <- f() })
	select {
	case err := <-res:
		return err
	case <-l.done:
		return protocol.Errorf(protocol.CodeConflict, "participant has left")
	}
}

func (l *subscriberLoop) run() {
	defer close(l.done)
	defer l.release()
	for {
		select {
		case <-l.quit:
			return
		case <-l.wake:
		}
		for {
			l.qmu.Lock()
			q := l.queue
			// The drained queue's array becomes the next one: a fresh
			// slice per wake-up was an allocation per allocation round.
			l.queue, l.spare = l.spare[:0], nil
			l.qmu.Unlock()
			if len(q) == 0 {
				l.qmu.Lock()
				l.spare = q
				l.qmu.Unlock()
				break
			}
			for _, f := range q {
				f()
			}
			clear(q) // no closure kept alive by the spare
			l.qmu.Lock()
			l.spare = q[:0]
			l.qmu.Unlock()
		}
		if l.offerDue() && !l.holdUntilConnected() {
			l.offerSoon()
		}
	}
}

// connectGrace is how long a change waits for the subscriber connection's
// first DTLS handshake after its first answer (holdUntilConnected). A
// client that connects loses nothing by the wait, and a slow one must not
// be offered a change while it connects: aiortc's handshake took over 3 s
// on a loaded CI machine, then over 10 s (TestAiortcClusterFirstRoom: the
// video of a relayed publisher, offered while it was still connecting, was
// never decoded). 30 s: by then the connection is up or has failed with
// the default --ice-failed-timeout (the server's ICE agent gives up after
// 30 s of checks, pion's DTLS handshake after 30 s), and a restart of a
// failed one is offered without a wait.
const connectGrace = 30 * time.Second

// holdUntilConnected: the first offer was answered but the connection has
// never come up yet; further offers wait for it (at most connectGrace from
// that answer). A client may not cope with a re-offer that adds media
// while it is still connecting: aiortc 1.4 then registers the new
// receivers on a transport its BUNDLE handling discards, and decodes
// nothing from those tracks for the whole call, though the server sends
// them (issue 14: in a cluster the relayed tracks of a fresh room are
// ready within that window). Browsers do not need it, and lose nothing:
// media written before DTLS is up goes nowhere anyway.
//
// "Up" is the client's end (sfu.Subscriber.PeerUp: the `data` channel
// opened), not the server's DTLS: aiortc's handshake ends one flight after
// the server's, and a starved aiortc read the re-offer before that flight
// (TestAiortcClusterFirstRoom under load: 0 frames decoded, the data
// channel opening after the second answer; TestReofferWaitsForClientDTLS).
//
// A resume's ICE restart waits too while the connection is still coming up
// for the first time (sfu.Subscriber.Handshaking): pion drops the selected
// candidate pair when ICE restarts, so the DTLS handshake under way (the
// server's next flight, or the client's on its side) had nowhere to go,
// pion failed it and closed the connection, and the participant left right
// after resuming (TestResumeDuringSubscriberHandshake; the soak under
// load: a publisher resumed 2 s after joining, its subscriber connection
// still handshaking). Once it is up the restart goes out; a restart of a
// connection that failed, or whose ICE has not connected, does not wait.
func (l *subscriberLoop) holdUntilConnected() bool {
	if l.answeredAt.IsZero() || l.p.sub.PeerUp() || (l.rs.restart && !l.p.sub.Handshaking()) {
		return false
	}
	wait := time.Until(l.answeredAt.Add(connectGrace))
	if wait <= 0 {
		return false
	}
	if !l.connWait {
		l.connWait = true
		l.connTimer = time.AfterFunc(wait, func() { l.post(func() { l.connWait = false }) })
	}
	return true
}

// offerDelay lets changes that come a few ms apart, such as a publisher's
// audio and video tracks starting, share one offer (and one answer) instead
// of one each. It only delays an offer for a change made while no offer
// was in flight; changes that waited for an answer go out at once.
const offerDelay = 40 * time.Millisecond

// markDirty records that a change awaits an offer.
func (l *subscriberLoop) markDirty() {
	if !l.dirty {
		l.dirty = true
		l.dirtyAt = time.Now()
	}
}

// offerSoon makes the offer now, or wakes the loop for it when the
// coalescing delay has passed and no publisher of an added track has
// another track about to start.
func (l *subscriberLoop) offerSoon() {
	due := l.dirtyAt.Add(offerDelay)
	for o := range l.starting {
		if until := o.siblingsStarting(); until.After(due) {
			due = until
		}
	}
	wait := time.Until(due)
	if wait <= 0 || l.rs.restart {
		l.offer()
		return
	}
	if !l.delayed {
		l.delayed = true
		time.AfterFunc(wait, func() { l.post(func() { l.delayed = false }) })
	}
}

// offer sends a new subscriber offer covering every change so far.
func (l *subscriberLoop) offer() {
	l.p.subCandidates.hold()
	defer l.p.subCandidates.release(l.p)
	sdp, err := l.createOffer()
	if err != nil {
		l.p.log.Warn("subscriber offer failed", "err", err)
		return
	}
	l.dirty = false
	clear(l.starting)
	l.inFlight = true
	l.gen++
	gen := l.gen
	l.timer = time.AfterFunc(l.p.m.cfg.NegotiationTimeout, func() {
		l.post(func() {
			if l.inFlight && l.gen == gen {
				l.p.log.Warn("subscriber offer not answered in time")
				go l.p.close(protocol.ReasonNegotiation, true)
			}
		})
	})
	// Sent to the session taken once and remembered, so resume knows
	// whether the socket it resumed on already carries this offer.
	l.offeredTo = l.p.rs.slot.get()
	if l.offeredTo != nil {
		l.offeredTo.Notify(protocol.MethodOffer, protocol.SDPParams{SDP: sdp})
	}
}

// answer applies the client's answer; a queued change makes the next offer.
func (l *subscriberLoop) answer(sdp string) error {
	if !l.inFlight {
		return protocol.Errorf(protocol.CodeConflict, "answer: no subscriber offer is pending")
	}
	if err := l.p.sub.SetAnswer(sdp); err != nil {
		l.p.log.Warn("subscriber answer not applied", "err", err)
		return protocol.Errorf(protocol.CodeInvalidParams, "invalid params: %v", err)
	}
	l.inFlight = false
	l.timer.Stop()
	if l.answeredAt.IsZero() {
		l.answeredAt = time.Now()
	}
	return nil
}

func (l *subscriberLoop) addDownTrack(t *Track) {
	if d, ok := l.down[t.id]; ok {
		// The same track published again by a participant that moved
		// (handover.go): the down track goes over to it.
		if prev := l.tracks[t.id]; prev != nil && prev != t && t.owner.room.track(t.id) == t {
			l.spliceDownTrack(prev, t, d)
		}
		return
	}
	if !t.inRoom() {
		// Unpublished since the subscription was queued: its
		// trackUnpublished is out, and the room's removal ran before this.
		return
	}
	if l.holdForMix(t) || l.subscriptionsFull(t) {
		return
	}
	r := t.source()
	if r == nil {
		t.awaitImport(l) // a remote track: its media comes by relay
		return
	}
	d := sfu.NewDownTrack(r, t.owner.id)
	if err := l.attach(d); err != nil {
		l.p.log.Warn("cannot add track to subscriber connection", "track", t.id, "err", err)
		return
	}
	l.down[t.id] = d
	l.tracks[t.id] = t
	l.setSubscribed(t.id, true)
	l.subsMu.Lock()
	l.subsDown[t.id] = subscription{t, d}
	l.subsMu.Unlock()
	l.apply(t, d)
	r.AddSink(d)
	l.markDirty()
	if t.owner != nil && t.owner.node == "" {
		if l.starting == nil {
			l.starting = map[*Participant]bool{}
		}
		l.starting[t.owner] = true
	}
}

func (l *subscriberLoop) removeDownTrack(id string) {
	if !l.forget(id) {
		return
	}
	if l.p.answering {
		l.p.sub.ClearSlot(id)
		return
	}
	if err := l.p.sub.RemoveDownTrack(id); err != nil {
		l.p.log.Debug("removing track from subscriber connection", "track", id, "err", err)
	}
	l.markDirty()
}

// forget stops a down track and drops it from the loop's books; the
// caller takes it off the connection.
func (l *subscriberLoop) forget(id string) bool {
	delete(l.mix.held, id)
	d, ok := l.down[id]
	if !ok {
		return false
	}
	delete(l.down, id)
	delete(l.sent, id)
	l.setSubscribed(id, false)
	d.Source().RemoveSink(d)
	d.Close()
	if t := l.tracks[id]; t != nil {
		delete(l.tracks, id)
		t.dynacast()
	}
	return true
}

// setSubscription merges the new preferences and applies them.
func (l *subscriberLoop) setSubscription(t *Track, s protocol.SetSubscriptionParams) {
	s = s.Over(l.prefs[t.id])
	l.prefs[t.id] = s
	if d, ok := l.down[t.id]; ok {
		l.apply(t, d)
	}
}

// apply sets a down track's pause and cap from the preferences, then
// reselects its layer.
func (l *subscriberLoop) apply(t *Track, d *sfu.DownTrack) {
	s := l.prefs[t.id]
	paused := (s.Paused != nil && *s.Paused) || t.muted() // a muted track is not forwarded
	quality, maxW, maxH := "", 0, 0
	if s.Quality != nil {
		quality = *s.Quality
	}
	if s.MaxWidth != nil {
		maxW = *s.MaxWidth
	}
	if s.MaxHeight != nil {
		maxH = *s.MaxHeight
	}
	_, bw := d.Limits()
	d.SetLimits(t.layerFor(quality, maxW, maxH), bw)
	d.SetPaused(paused)
	l.allocate() // a new cap or an unpause must fit the downlink estimate
	l.reselect(t, d)
}

// reselect recomputes a down track's layer and tells the subscriber what it
// gets and why when that changed, then updates the publisher's layers.
func (l *subscriberLoop) reselect(t *Track, d *sfu.DownTrack) {
	layer, reason, _ := d.Reselect()
	if t.kind == webrtc.RTPCodecTypeVideo {
		update := protocol.SubscriptionUpdatedParams{TrackID: t.id, Layer: t.qualityOf(layer), Reason: reason}
		if d.Paused() {
			// Paused by the subscriber's own setSubscription, else because
			// the track is muted: its publisher (or the admin API) stopped it.
			reason := sfu.ReasonSubscriber
			if s := l.prefs[t.id]; (s.Paused == nil || !*s.Paused) && t.muted() {
				reason = sfu.ReasonPublisher
			}
			update = protocol.SubscriptionUpdatedParams{TrackID: t.id, Layer: protocol.QualityPaused, Reason: reason}
		} else if d.BandwidthPaused() {
			update = protocol.SubscriptionUpdatedParams{TrackID: t.id, Layer: protocol.QualityPaused, Reason: sfu.ReasonBandwidth}
		}
		if l.sent[t.id] != update {
			l.sent[t.id] = update
			t.notifyIfInRoom(l.p.peer, protocol.NotifySubscriptionUpdated, update)
		}
	}
	t.dynacast()
}

// reselectTrack reselects the down track of t, if subscribed.
func (l *subscriberLoop) reselectTrack(t *Track) {
	if d, ok := l.down[t.id]; ok {
		l.reselect(t, d)
	}
}

// applyTrack re-applies the preferences of t's down track, if subscribed
// (its layers' sizes changed, so its maxWidth/maxHeight cap may too).
func (l *subscriberLoop) applyTrack(t *Track) {
	if d, ok := l.down[t.id]; ok {
		l.apply(t, d)
	}
}

func (l *subscriberLoop) setSubscribed(id string, on bool) {
	l.subsMu.Lock()
	defer l.subsMu.Unlock()
	if on {
		l.subsSeen[id] = true
	} else {
		delete(l.subsSeen, id)
		delete(l.subsDown, id)
	}
}

type subscription struct {
	track *Track
	down  *sfu.DownTrack
}

// SubscriptionInfo is one track a participant receives, for operators.
type SubscriptionInfo struct {
	TrackID string
	// Quality is the layer forwarded now (low, medium, high); "" for audio,
	// and while paused or waiting for a keyframe.
	Quality string
	Down    *sfu.DownTrack
}

// Subscriptions lists the participant's subscriptions, sorted by track id;
// safe from any goroutine.
func (p *Participant) Subscriptions() []SubscriptionInfo {
	l := &p.loop
	l.subsMu.Lock()
	subs := make([]subscription, 0, len(l.subsDown))
	for _, s := range l.subsDown {
		subs = append(subs, s)
	}
	l.subsMu.Unlock()
	out := make([]SubscriptionInfo, 0, len(subs))
	for _, s := range subs {
		info := SubscriptionInfo{TrackID: s.track.id, Down: s.down}
		if cur := s.down.Current(); s.track.kind == webrtc.RTPCodecTypeVideo && cur >= 0 && !s.down.Paused() {
			info.Quality = s.track.qualityOf(cur)
		}
		out = append(out, info)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].TrackID < out[j].TrackID })
	return out
}

// subscribed reports whether track id is subscribed; safe from any goroutine.
func (l *subscriberLoop) subscribed(id string) bool {
	l.subsMu.Lock()
	defer l.subsMu.Unlock()
	return l.subsSeen[id]
}

// release detaches every down track; runs on the loop as it exits.
func (l *subscriberLoop) release() {
	if l.timer != nil {
		l.timer.Stop()
	}
	if l.connTimer != nil {
		l.connTimer.Stop()
	}
	for id, d := range l.down {
		d.Source().RemoveSink(d)
		d.Close()
		delete(l.down, id)
	}
	l.dropMixDown()
	l.subsMu.Lock()
	clear(l.subsDown)
	l.subsMu.Unlock()
}

// stop ends the loop and waits for it; safe to call more than once, but not
// from the loop itself.
func (l *subscriberLoop) stop() {
	l.once.Do(func() { close(l.quit) })
	<-l.done
}
