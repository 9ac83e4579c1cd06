package client

import (
	"encoding/json"
	"sync"

	"github.com/starling-rtc/starling/protocol"
)

// What the client asked of its subscriptions, re-sent with each resume
// (protocol.JoinParams.Subscriptions): a node that takes the participant
// over from a dead or draining node has none of its state, and restores
// its manual subscriptions and setSubscription caps from this instead of
// starting again from autoSubscribe (docs/cluster-failover.md).

// subscriptionLog folds the successful subscribe, unsubscribe and
// setSubscription requests made through Call.
type subscriptionLog struct {
	mu       sync.Mutex
	want     map[string]bool // track id: subscribed (true) or unsubscribed (false) by request
	settings map[string]protocol.SetSubscriptionParams
	order    []string // track ids of settings, first set first
}

// record folds a request that succeeded.
func (l *subscriptionLog) record(method string, params any) {
	if method != protocol.MethodSubscribe && method != protocol.MethodUnsubscribe && method != protocol.MethodSetSubscription {
		return
	}
	raw, err := json.Marshal(params) // params may be a struct or a map
	if err != nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.want == nil {
		l.want, l.settings = map[string]bool{}, map[string]protocol.SetSubscriptionParams{}
	}
	if method == protocol.MethodSetSubscription {
		var s protocol.SetSubscriptionParams
		if json.Unmarshal(raw, &s) != nil || s.TrackID == "" {
			return
		}
		old, ok := l.settings[s.TrackID]
		if !ok {
			l.order = append(l.order, s.TrackID)
		}
		l.settings[s.TrackID] = s.Over(old) // nil fields keep their values, as on the server
		return
	}
	var p protocol.TrackIDsParams
	if json.Unmarshal(raw, &p) != nil {
		return
	}
	for _, id := range p.TrackIDs {
		l.want[id] = method == protocol.MethodSubscribe
	}
}

// forget drops what was asked of a track that is unpublished: its id will
// not come back.
func (l *subscriptionLog) forget(raw json.RawMessage) {
	var p protocol.TrackUnpublishedParams
	if json.Unmarshal(raw, &p) != nil || p.TrackID == "" {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.want, p.TrackID)
	if _, ok := l.settings[p.TrackID]; ok {
		delete(l.settings, p.TrackID)
		for i, id := range l.order {
			if id == p.TrackID {
				l.order = append(l.order[:i], l.order[i+1:]...)
				break
			}
		}
	}
}

// reset forgets everything (the client joined afresh as a new participant).
func (l *subscriptionLog) reset() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.want, l.settings, l.order = nil, nil, nil
}

// snapshot is what a resume sends; nil when nothing was asked.
func (l *subscriptionLog) snapshot() *protocol.ResumeSubscriptions {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.want) == 0 && len(l.settings) == 0 {
		return nil
	}
	out := &protocol.ResumeSubscriptions{}
	for id, on := range l.want {
		if on {
			out.Subscribed = append(out.Subscribed, id)
		} else {
			out.Unsubscribed = append(out.Unsubscribed, id)
		}
	}
	for _, id := range l.order {
		out.Settings = append(out.Settings, l.settings[id])
	}
	return out
}
