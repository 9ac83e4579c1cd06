package cluster

import (
	"context"
	"encoding/json"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// What this node owns in the room state bucket besides its rooms' members
// and tracks, remembered so that it can write it back into a bucket made
// again after the NATS server restarted (bucketlost.go): its rooms'
// recording claims (a claim is renewed at its revision, recorder/lease.go:
// in a new bucket that revision is gone, and the recording stopped as
// failed) and the webhook claims it made (hookonce.go: lost, a
// participant_left this node sent could be sent again by another node that
// later purges the same member). A room's mix settings are every node's
// (each keeps them in its part of the room): writeOwnStateBack writes them
// from there.

// maxOwnedHooks bounds the webhook claims remembered: one per participant
// and track that left through this node within claimTTL (24 h). Past it
// the oldest are forgotten (after a restart of NATS a duplicate webhook of
// them becomes possible again, as it was before they were remembered).
const maxOwnedHooks = 100000

type ownedKeys struct {
	mu sync.Mutex
	// rec: a room's recording claim as this node last wrote it (held,
	// or held marked stopped: recorder/claim.go).
	rec map[string][]byte
	// hooks: the webhook claims this node made, oldest first.
	hooks []ownedHook
}

type ownedHook struct {
	key   string
	value []byte
	at    time.Time
}

// recClaimed notes the claim this node wrote for a room (nil: it let it go).
func (o *ownedKeys) recClaimed(room string, value []byte) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if value == nil {
		delete(o.rec, room)
		return
	}
	if o.rec == nil {
		o.rec = map[string][]byte{}
	}
	o.rec[room] = append([]byte(nil), value...)
}

// recOwned reports whether value is this node's claim of room.
func (o *ownedKeys) recOwned(room string, value []byte) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	v, ok := o.rec[room]
	return ok && string(v) == string(value)
}

// recLost forgets room's claim when it is value (another node replaced it).
func (o *ownedKeys) recLost(room string, value []byte) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if v, ok := o.rec[room]; ok && string(v) == string(value) {
		delete(o.rec, room)
	}
}

// hookClaimed notes a webhook claim this node made.
func (o *ownedKeys) hookClaimed(key string, value []byte) {
	o.mu.Lock()
	defer o.mu.Unlock()
	now := time.Now()
	drop := 0
	for drop < len(o.hooks) && (now.Sub(o.hooks[drop].at) > claimTTL || len(o.hooks)-drop >= maxOwnedHooks) {
		drop++
	}
	o.hooks = append(o.hooks[drop:], ownedHook{key, value, now})
}

// writeOwnedBack writes this node's recording claims (of rooms it still
// has a part of) and its unexpired webhook claims into a bucket made
// again; a key another node wrote first is left as it is.
func (n *Node) writeOwnedBack() {
	n.owned.mu.Lock()
	rec := make(map[string][]byte, len(n.owned.rec))
	for room, v := range n.owned.rec {
		if n.rooms != nil && n.rooms.Room(room) == nil {
			delete(n.owned.rec, room) // its part here is gone: another node's now, or nobody's
			continue
		}
		rec[room] = v
	}
	hooks := append([]ownedHook(nil), n.owned.hooks...)
	n.owned.mu.Unlock()
	create := func(key string, value []byte, opts ...jetstream.KVCreateOpt) error {
		return n.retry(func(ctx context.Context) error {
			_, err := n.bus.kv.Create(ctx, key, value, opts...)
			if isConflict(err) {
				return nil // another node wrote it since: its value stands
			}
			return err
		})
	}
	for room, v := range rec {
		if err := create(recKey(room), v); err != nil {
			n.log.Warn("room state: recording claim not written back", "room", room, "err", err)
		}
	}
	now := time.Now()
	written := 0
	for _, h := range hooks {
		left := claimTTL - now.Sub(h.at)
		if left <= time.Second {
			continue
		}
		var opts []jetstream.KVCreateOpt
		if n.bus.markerTTL {
			opts = append(opts, jetstream.KeyTTL(left))
		}
		if err := create(h.key, h.value, opts...); err != nil {
			n.log.Warn("room state: webhook claims not written back", "err", err)
			break // the store is away again: the next check writes them
		}
		written++
	}
	if written > 0 {
		n.log.Info("room state: webhook claims written back", "claims", written)
	}
}

// writeMixBack writes a room's mix settings, as this node's part of the
// room has them, into a bucket made again (every node of the room has
// them all: the first write stands).
func (n *Node) writeMixBack(name, sid string, prefs map[string]MixSetting) {
	if len(prefs) == 0 {
		return
	}
	data, _ := json.Marshal(mixPrefs{SID: sid, Prefs: prefs})
	err := n.retry(func(ctx context.Context) error {
		_, err := n.bus.kv.Create(ctx, mixKey(name), data)
		if isConflict(err) {
			return nil
		}
		return err
	})
	if err != nil {
		n.log.Warn("room state: mix settings not written back", "room", name, "err", err)
	}
}
