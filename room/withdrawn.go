package room

import (
	"maps"
	"slices"

	"github.com/starling-rtc/starling/protocol"
)

// A track unpublished with `unpublish` while the client's SDP goes on
// sending it is "withdrawn": the next publisher offer, which still sends
// it, published it again under a new id in its result, but pion hands a
// media section's track to the server once (OnTrack), so the new track
// never received a packet and was never announced to anyone. Now such a
// track stays unpublished (left out of the offer result) until an offer
// stops sending it; sent again after that (pion then delivers it anew), it
// is published as any new track. docs/PROTOCOL.md "What an offer
// publishes".

// withdrawnLocked lists the withdrawn client track ids, sorted (nil for
// none); under p.mu.
func (p *Participant) withdrawnLocked() []string {
	if len(p.withdrawn) == 0 {
		return nil
	}
	return slices.Sorted(maps.Keys(p.withdrawn))
}

// memberNow is memberLocked taking p.mu.
func (p *Participant) memberNow() Member {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.memberLocked()
}

// storeMember tells the cluster that what its member key keeps changed
// (the withdrawn marks, the name or metadata), so a node that takes the
// participant over, also after its node died, starts it with them. Not
// under p.mu.
func (p *Participant) storeMember() {
	if b := p.room.bus; b != nil && p.node == "" {
		b.StoreMember(p.room.name, p.id, p.memberNow)
	}
}

// withdraw marks cid as unpublished by request; under p.mu.
func (p *Participant) withdraw(cid string) {
	if p.withdrawn == nil {
		p.withdrawn = map[string]bool{}
	}
	p.withdrawn[cid] = true
}

// checkWithdrawn refuses an offer whose tracks describe a withdrawn track:
// the client means to publish it, and it would not be.
func (p *Participant) checkWithdrawn(anns []protocol.TrackAnnouncement) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, a := range anns {
		if p.withdrawn[a.TrackID] {
			return protocol.Errorf(protocol.CodeConflict,
				"track %q was unpublished: send an offer that no longer sends it before publishing it again, or publish it under another track id", a.TrackID)
		}
	}
	return nil
}

// forgetWithdrawn drops the marks of tracks the offer no longer sends,
// and reports whether it dropped any; under p.mu.
func (p *Participant) forgetWithdrawn(inSDP map[string]bool) (changed bool) {
	for cid := range p.withdrawn {
		if !inSDP[cid] {
			delete(p.withdrawn, cid)
			changed = true
		}
	}
	return changed
}
