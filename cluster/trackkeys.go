package cluster

import (
	"context"
	"encoding/json"
	"sync"
	"time"

	"github.com/starling-rtc/starling/protocol"
	"github.com/starling-rtc/starling/room"
)

// A killed node never sends the track_unpublished webhook of its tracks.
// A live node with a part of the room knows them (its stubs' tracks:
// deadTracks, hookonce.go), but when the dead node held the room alone no
// live node does. So each node keeps its published tracks in the room
// state bucket, one key per track, t.<node>.<track id> (put when the
// track is published, deleted when it ends), and every live node that
// finds a node gone reads that node's track keys, claims each track's
// webhook (one node of the cluster sends it) and deletes the keys
// (storedTracksGone). A track key costs one write when the track is
// published and one when it ends, and no room watch sees it (it is not
// under the room's key).
//
// A node cut off from the bus for longer than the heartbeat expiry is
// found gone by the others, which delete its track keys (and send the
// tracks' track_unpublished) while its calls go on. So when it hears a
// node it had lost again (its link is back), it writes the keys of its
// tracks published now back (rewriteTracks), once at once and once more
// after another node's deletion that was under way may have landed.
// Before, they stayed deleted: killed later, the node's tracks of a room
// no live node had a part of never got their track_unpublished.

func trackKey(node, id string) string { return "t." + enc(node) + "." + enc(id) }

// storedTrack is the value of a track key: what its webhook reports.
type storedTrack struct {
	Room            string         `json:"room"`
	RoomSID         string         `json:"roomSid"`
	ParticipantID   string         `json:"participantId"`
	ParticipantName string         `json:"participantName,omitempty"`
	Identity        string         `json:"identity"`
	Track           protocol.Track `json:"track"`
}

type trackOp struct {
	key  string
	data []byte // nil: delete
}

// trackStore is the queue of track key writes, worked in order by one
// goroutine (a track's delete must not overtake its put).
type trackStore struct {
	mu      sync.Mutex
	ops     []trackOp
	running bool
	// live is every local track's key and value as last queued: what a
	// write-back puts again.
	live map[string][]byte
	// rewriting: a write-back is under way (its second pass pending).
	rewriting bool
}

// storeTrack queues the write of a local track's key (data nil: its
// deletion).
func (n *Node) storeTrack(t room.PublishedTrack, published bool) {
	if t.Node != "" {
		return // another node's track: that node keeps its key
	}
	op := trackOp{key: trackKey(n.id, t.Track.ID)}
	if published {
		op.data, _ = json.Marshal(storedTrack{Room: t.Room, RoomSID: t.RoomSID, ParticipantID: t.ParticipantID,
			ParticipantName: t.ParticipantName, Identity: t.Identity, Track: t.Track})
	}
	q := &n.tracks
	q.mu.Lock()
	if q.live == nil {
		q.live = map[string][]byte{}
	}
	if published {
		q.live[op.key] = op.data
	} else {
		delete(q.live, op.key)
	}
	q.ops = append(q.ops, op)
	n.startTrackOpsLocked()
	q.mu.Unlock()
}

// startTrackOpsLocked starts the queue's worker unless it runs; the caller
// holds n.tracks.mu.
func (n *Node) startTrackOpsLocked() {
	q := &n.tracks
	if q.running || len(q.ops) == 0 {
		return
	}
	q.running = true
	if !n.spawn(func() { n.runTrackOps() }) {
		q.running = false // closing: the queue is left as it is
	}
}

// rewriteTracks queues the keys of the local tracks published now again
// (the others may have deleted them while this node was cut off), and
// once more after trackRewriteAgain: a gone node's keys are read and
// deleted by every live node, and one whose read came after the first
// write-back deletes it. Puts of a track's current value are harmless when
// the key is there; the queue keeps them in order with the tracks' own
// puts and deletes.
func (n *Node) rewriteTracks() {
	q := &n.tracks
	q.mu.Lock()
	if q.rewriting {
		q.mu.Unlock()
		return
	}
	q.rewriting = true
	q.mu.Unlock()
	if !n.spawn(func() {
		defer func() { q.mu.Lock(); q.rewriting = false; q.mu.Unlock() }()
		for pass := 0; pass < 2; pass++ {
			if pass > 0 {
				select {
				case <-n.stop:
					return
				case <-time.After(trackRewriteAgain):
				}
			}
			q.mu.Lock()
			for key, data := range q.live {
				q.ops = append(q.ops, trackOp{key: key, data: data})
			}
			if len(q.live) > 0 {
				n.log.Info("room state: writing this node's track keys back", "tracks", len(q.live))
			}
			n.startTrackOpsLocked()
			q.mu.Unlock()
		}
	}) {
		q.mu.Lock()
		q.rewriting = false // closing
		q.mu.Unlock()
	}
}

// trackRewriteAgain is when a write-back of the track keys is done again:
// past the heartbeat expiry twice, when every node has heard this one
// again and the deletions started before are done or fail on the
// revision.
const trackRewriteAgain = 2 * hbExpiry

// runTrackOps writes the queued track keys, each held until the store
// takes it (a cut, an election) or the node stops.
func (n *Node) runTrackOps() {
	q := &n.tracks
	pause := 100 * time.Millisecond
	for {
		q.mu.Lock()
		if len(q.ops) == 0 {
			q.running = false
			q.mu.Unlock()
			return
		}
		op := q.ops[0]
		q.mu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), kvTimeout)
		var err error
		if op.data != nil {
			_, err = n.bus.kv.Put(ctx, op.key, op.data)
		} else {
			_, err = n.kvDelete(ctx, op.key, 0)
		}
		cancel()
		if err == nil {
			q.mu.Lock()
			q.ops = q.ops[1:]
			q.mu.Unlock()
			pause = 100 * time.Millisecond
			continue
		}
		n.log.Debug("track key not written yet", "key", op.key, "err", err)
		select {
		case <-n.stop:
			return
		case <-time.After(pause):
		}
		pause = min(2*pause, claimRetryMax)
	}
}

// goneTracksWait bounds how long a live node keeps trying to read a gone
// node's track keys while the room state store does not answer.
const goneTracksWait = 5 * time.Minute

// storedTracksGone reports the tracks a gone node left in the room state
// unpublished (claimed: one node of the cluster sends each, hookonce.go)
// and deletes their keys. It waits for the store (the gone node may have
// led its stream) up to goneTracksWait, all keys together: the store wait
// alone (8 s) was shorter than an election on a loaded machine, and the
// webhooks were then never sent (TestWebhookTrackUnpublishedForKilledNodesLoneRoom
// under two busy loops).
func (n *Node) storedTracksGone(node string) {
	ctx, cancel := context.WithTimeout(context.Background(), goneTracksWait)
	defer cancel()
	go func() { // a node closing does not wait for the store
		select {
		case <-n.stop:
		case <-ctx.Done():
		}
		cancel()
	}()
	retry := func(step func(ctx context.Context) error) error { return n.retryCtx(ctx, kvTimeout, step) }
	keys, err := n.listKeys(retry, "t."+enc(node)+".*")
	if err != nil {
		n.log.Warn("room state: a gone node's tracks not listed", "node", node, "err", err)
		return
	}
	for _, k := range keys {
		if ctx.Err() != nil {
			return
		}
		var st storedTrack
		var rev uint64
		if err := retry(func(ctx context.Context) (err error) { rev, err = n.getJSON(ctx, k, &st); return err }); err != nil || rev == 0 {
			continue
		}
		if st.Track.ID == "" {
			continue // unreadable
		}
		pt := room.PublishedTrack{Room: st.Room, RoomSID: st.RoomSID, ParticipantID: st.ParticipantID,
			ParticipantName: st.ParticipantName, Identity: st.Identity, Track: st.Track, Node: node}
		if n.opts.OnTrackGone != nil {
			n.Once(OnceTrackUnpublished, pt.Track.ID, func() { n.opts.OnTrackGone(pt) })
		}
		_ = retry(func(ctx context.Context) error {
			_, err := n.kvDelete(ctx, k, rev)
			if isConflict(err) {
				return nil // deleted (or rewritten) meanwhile
			}
			return err
		})
	}
}
