package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// The room state bucket lost. The bucket lives in memory (bus.go), so a
// NATS server that restarts loses it: an external NATS (--nats-url) of one
// server restarted by its operator, or every server holding its replicas.
// The nodes kept their calls (their bus connections came back) but every
// change of the room state failed from then on ("stream not found": joins
// and GET /v1/rooms answered 503 for good, until every node restarted).
// So each node checks, when its bus connection comes back and every
// bucketCheckEvery besides, that the bucket is the one it opened (its
// stream's creation time); a node that finds it gone makes it again (one
// node wins, the others find it made), and each node that finds a new
// bucket writes back what it knows of its own: each room it has a part of (its key with
// the room's sid, then its participants' keys, as after a cut:
// writeback.go), its node key and its tracks' keys. Each node does so for
// its own, so the state is whole again once every node has.

// bucketCheckEvery is how often a node checks, besides at each
// reconnection, that the room state bucket exists (one stream info
// request).
const bucketCheckEvery = 30 * time.Second

// rebuildGrace is how long after this node found the bucket made again
// a remote member missing from it is not taken for gone: every node writes
// its own members back when it finds the new bucket, within a few seconds
// of its bus connection coming back. A member that really left meanwhile
// is removed by its leave event, which does not go through the bucket.
const rebuildGrace = 10 * time.Second

// bucketJustRemade reports whether the room state bucket was made again
// lately (within rebuildGrace of this node finding it), or is not the one
// this node knows (made again, and this node has not looked yet: it is
// told to).
func (n *Node) bucketJustRemade() bool {
	if t := n.remadeAt.Load(); t != 0 && time.Since(time.Unix(0, t)) < rebuildGrace {
		return true
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	s, err := n.bus.js.Stream(ctx, "KV_"+roomsBucket)
	switch {
	case errors.Is(err, jetstream.ErrStreamNotFound):
	case err != nil:
		return false
	default:
		if n.bus.sameBucket(s.CachedInfo().Created) {
			return false
		}
	}
	select {
	case n.bucketCheck <- struct{}{}:
	default:
	}
	return true
}

// keepBucket runs until the node stops.
func (n *Node) keepBucket() {
	tick := time.NewTicker(bucketCheckEvery)
	defer tick.Stop()
	for {
		select {
		case <-n.stop:
			return
		case <-tick.C:
		case <-n.bucketCheck:
		}
		// Just reconnected, JetStream may not answer yet (a NATS cluster
		// electing its meta leader): ask again until it says.
		for wait := 250 * time.Millisecond; !n.checkBucket(); wait = min(2*wait, 5*time.Second) {
			select {
			case <-n.stop:
				return
			case <-time.After(wait):
			}
		}
	}
}

// checkBucket makes the bucket again when it is gone, and writes this
// node's part of the state back when the bucket is not the one it wrote
// to (gone, or made again by another node: its stream's creation time
// changed); false when JetStream did not say.
func (n *Node) checkBucket() bool {
	ctx, cancel := context.WithTimeout(context.Background(), kvTimeout)
	defer cancel()
	s, err := n.bus.js.Stream(ctx, "KV_"+roomsBucket)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		n.log.Warn("the room state store's bucket is gone (its NATS server restarted?): making it again")
		if err := n.bus.remakeBucket(ctx); err != nil {
			n.log.Warn("room state bucket not made again (trying again)", "err", err)
			return false
		}
		s, err = n.bus.js.Stream(ctx, "KV_"+roomsBucket)
	}
	if err != nil {
		return false
	}
	made := s.CachedInfo().Created
	if n.bus.sameBucket(made) {
		return true
	}
	n.bucketRewrites.Add(1)
	n.log.Warn("the room state store's bucket was made again (its NATS server restarted?): writing this node's rooms back")
	n.bus.smu.Lock()
	n.bus.made, n.bus.kvStream = made, nil // the stream is another one now
	n.bus.smu.Unlock()
	n.remadeAt.Store(time.Now().UnixNano())
	n.writeOwnStateBack()
	return true
}

// sameBucket reports whether a bucket whose stream was made at made is
// the one this node opened. When that time was not learnt at start (the
// store did not answer in time), a stream made before the node opened the
// bucket is the one it opened, and its time is kept: taken for one made
// again, the node wrote its rooms, members, node key and tracks back in
// the middle of a join storm. No allowance for the clocks: the store's
// clock ahead of this node's costs a write-back that was not needed (what
// every check did before), behind it could miss a bucket made again.
func (b *bus) sameBucket(made time.Time) bool {
	b.smu.Lock()
	defer b.smu.Unlock()
	if b.made.IsZero() && !made.After(b.opened) {
		b.made = made
	}
	return made.Equal(b.made)
}

// remakeBucket creates the bucket as openBucket did; another node making
// it first is fine.
func (b *bus) remakeBucket(ctx context.Context) error {
	cfg := jetstream.KeyValueConfig{
		Bucket: roomsBucket, Storage: jetstream.MemoryStorage, History: 1,
		Description: "Starling rooms: sid, members, identities, slots (cluster-wide facts, compare-and-set)",
	}
	if b.markerTTL {
		cfg.LimitMarkerTTL = markerTTL
	}
	var err error
	for r := max(b.replicas, 1); r >= 1; r-- {
		cfg.Replicas = r
		_, err = b.js.CreateKeyValue(ctx, cfg)
		var apiErr *jetstream.APIError // 10005: no peers for placement, 10023: insufficient resources
		if !errors.As(err, &apiErr) || (apiErr.ErrorCode != 10005 && apiErr.ErrorCode != 10023) {
			break
		}
	}
	if errors.Is(err, jetstream.ErrBucketExists) {
		err = nil
	}
	return err
}

// writeOwnStateBack writes this node's rooms, members, node key and track
// keys into a bucket made again.
func (n *Node) writeOwnStateBack() {
	n.writeNodeKey()
	n.writeOwnedBack() // recording claims first: their leases are running (owned.go)
	n.rs.mu.Lock()
	names := make([]string, 0, len(n.rs.subs))
	for name := range n.rs.subs {
		names = append(names, name)
	}
	n.rs.mu.Unlock()
	for _, name := range names {
		r := n.rooms.Room(name)
		if r == nil {
			continue
		}
		meta, _ := json.Marshal(roomMeta{SID: r.SID()})
		err := n.retry(func(ctx context.Context) error {
			_, err := n.bus.kv.Create(ctx, roomKey(name), meta)
			if isConflict(err) {
				return nil // another node of the room wrote it
			}
			return err
		})
		if err != nil {
			n.log.Warn("room state: room not written back", "room", name, "err", err)
			continue
		}
		// Its members now, not after the watch has seen them missing for
		// a second: the other nodes' watches would meanwhile see the
		// room without them and drop their stubs. Under the watch's lock,
		// as its own write-back runs (reconcileState): two write-backs of
		// one member at once take each other's slot.
		if w := n.rs.watch(name); w != nil {
			w.mu.Lock()
			n.reassert(r, r.LocalMembers())
			w.mu.Unlock()
		} else {
			n.reassert(r, r.LocalMembers())
		}
		prefs := map[string]MixSetting{}
		for id, s := range r.MixPrefs() {
			prefs[id] = MixSetting{Gain: s.Gain, Muted: s.Muted}
		}
		n.writeMixBack(name, r.SID(), prefs)
	}
	n.rewriteTracks()
	n.rs.resyncAll() // the watches' consumers went with the stream
	n.restartNodeKeys()
}
