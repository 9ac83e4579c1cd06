package room

import "github.com/starling-rtc/starling/protocol"

// Restoring subscriptions on a takeover. A node that takes a participant
// over from a dead or draining node has none of its state: the client
// re-sends, with its resume, what it asked of its subscriptions
// (protocol.ResumeSubscriptions), and the participant starts with them
// instead of with autoSubscribe's every track.
//
// Why the client and not the cluster state: the client is the one party
// that survives any node's death and knows exactly what it asked; keeping
// subscriptions in the room state store would rewrite the room's whole
// entry (every member) with a compare-and-set at each subscribe and each
// setSubscription (caps change with every layout change), on the store
// that is already the first thing to break at scale (docs/cluster.md),
// and a write in flight when the node dies would be lost anyway.

// maxRestored bounds each list of a ResumeSubscriptions: more than any
// participant can hold, few enough to walk on the subscriber loop.
const maxRestored = 4096

// restoreEntry is what the client asked of one track.
type restoreEntry struct {
	sub int // +1 subscribed by request, -1 unsubscribed by request, 0 neither
	set *protocol.SetSubscriptionParams
}

// restoreSubscriptions subscribes the participant to autoSubscribe's tracks
// minus those it unsubscribed from plus those it subscribed to, with its
// setSubscription preferences set first so that the first offer already
// carries capped layers. A node that takes a participant over may not know
// the room's tracks yet (its part of the room is new: the other nodes'
// snapshots are on their way), so what concerns a track not known yet is
// kept and applied when the track appears (restoredTrack). Runs on the
// subscriber loop, from Start.
func (p *Participant) restoreSubscriptions() {
	if !p.Permissions().CanSubscribe {
		return
	}
	rs := p.restore
	pending := map[string]*restoreEntry{}
	entry := func(id string) *restoreEntry {
		if pending[id] == nil {
			pending[id] = &restoreEntry{}
		}
		return pending[id]
	}
	for i, id := range rs.Unsubscribed {
		if i < maxRestored {
			entry(id).sub = -1
		}
	}
	for i, id := range rs.Subscribed {
		if i < maxRestored {
			entry(id).sub = +1
		}
	}
	for i := range rs.Settings {
		if i < maxRestored && rs.Settings[i].TrackID != "" {
			entry(rs.Settings[i].TrackID).set = &rs.Settings[i]
		}
	}
	p.restorePending = pending
	tracks := p.room.publishedTracks(p)
	for _, t := range tracks {
		p.restoreTrack(t)
	}
	p.log.Info("subscriptions restored after a takeover", "tracks", len(tracks), "waiting", len(p.restorePending))
}

// restoreTrack applies what the client asked of t (or autoSubscribe, when
// it asked nothing). On the subscriber loop.
func (p *Participant) restoreTrack(t *Track) {
	e := p.restorePending[t.id]
	delete(p.restorePending, t.id)
	if e == nil {
		e = &restoreEntry{}
	}
	if e.set != nil {
		if _, err := p.subscriptionTarget(*e.set); err != nil {
			p.log.Info("restoring a subscription setting: skipped", "track", t.id, "err", err)
		} else {
			p.loop.setSubscription(t, *e.set)
		}
	}
	if e.sub > 0 || (e.sub == 0 && p.autoSubscribe) {
		if p.Permissions().CanSubscribe {
			p.loop.addDownTrack(t)
		}
	}
}

// trackAppeared handles a track published in the room (or newly known
// here) for a participant that autoSubscribes or was taken over with its
// subscriptions.
func (p *Participant) trackAppeared(t *Track) {
	if p.restore == nil {
		p.subscribeTrack(t)
		return
	}
	p.loop.post(func() {
		if !p.loop.started {
			return // Start's restoreSubscriptions sees it among the room's tracks
		}
		p.restoreTrack(t)
	})
}
