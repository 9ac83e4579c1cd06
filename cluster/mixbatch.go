package cluster

import (
	"sync"

	"github.com/starling-rtc/starling/protocol"
)

// Settings made through one node at once for one room are stored together.
// Each is a change of the room's one settings key by compare-and-set, and
// of N writers at once only one wins a round: the others read again and
// write again, so N settings made together took N rounds and the last of
// them, losing every round, gave up ("keep changing", 503: 117 of 180 in a
// CI run under -race). Queued per room, the settings that arrive while a
// write is under way go together in the next one: a node has at most one
// write of a room's settings in flight, and a round has as many writers as
// nodes taking settings for that room.

type mixQueue struct {
	mu      sync.Mutex
	pending map[string][]*mixReq // by room name, not yet written
	busy    map[string]bool      // a write of the room's settings is under way
}

// mixReq is one setting waiting for its write.
type mixReq struct {
	sid         string
	participant string
	gain        *float64
	muted       *bool
	set         MixSetting // the participant's setting once stored
	err         error
	done        chan struct{} // closed once stored or refused
	lead        chan struct{} // closed when this one is to write the queue
}

// storeMix stores r with the other settings of the room queued here, and
// returns once it is stored or refused.
func (n *Node) storeMix(name string, r *mixReq) {
	r.done, r.lead = make(chan struct{}), make(chan struct{})
	q := &n.mixQ
	q.mu.Lock()
	if q.pending == nil {
		q.pending, q.busy = map[string][]*mixReq{}, map[string]bool{}
	}
	q.pending[name] = append(q.pending[name], r)
	if q.busy[name] {
		q.mu.Unlock()
		select {
		case <-r.done: // written in another's batch
			return
		case <-r.lead: // the write before ended: this one writes the queue
		}
		q.mu.Lock()
	}
	q.busy[name] = true
	batch := q.pending[name]
	delete(q.pending, name)
	q.mu.Unlock()

	n.storeMixBatch(name, batch)

	q.mu.Lock()
	if next := q.pending[name]; len(next) > 0 {
		close(next[0].lead) // still queued, so not done: it writes the rest
	} else {
		delete(q.busy, name)
	}
	q.mu.Unlock()
}

// storeMixBatch applies the batch's settings in their order in one write.
func (n *Node) storeMixBatch(name string, batch []*mixReq) {
	err := n.updateMixPrefs(name, func(p *mixPrefs) error {
		for _, r := range batch {
			r.err = nil
			if p.SID != r.sid {
				*p = mixPrefs{SID: r.sid}
			}
			if p.Prefs == nil {
				p.Prefs = map[string]MixSetting{}
			}
			cur, ok := p.Prefs[r.participant]
			if !ok {
				if len(p.Prefs) >= maxMixPrefs {
					r.err = protocol.Errorf(protocol.CodeInvalidParams, "the room has %d mix settings, the most it keeps", maxMixPrefs)
					continue
				}
				cur.Gain = 1
			}
			if r.gain != nil {
				cur.Gain = *r.gain
			}
			if r.muted != nil {
				cur.Muted = *r.muted
			}
			p.Prefs[r.participant] = cur
			r.set = cur
		}
		return nil
	})
	for _, r := range batch {
		if err != nil && r.err == nil {
			r.err = err
		}
		close(r.done)
	}
}
