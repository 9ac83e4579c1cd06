package cluster

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Webhooks sent once for the cluster. Participant and track webhooks come
// from the node where they happen, but two nodes may each believe a leave
// or an unpublish is theirs to report:
//
//   - a node cut off from the bus for longer than the resume window: the
//     others purge its members and send their participant_left
//     ("disconnected", deadmembers.go); when the bus is back its members
//     are written back (writeback.go), and when they really leave, their
//     own node sends participant_left again;
//   - a dead node's tracks: every live node with a part of the room ends
//     its stubs' tracks at once (room/failover.go), and any of them could
//     send their track_unpublished.
//
// So such a webhook is sent only by the node that creates its claim key
// in the room state bucket, h.<event>.<id> (the participant or track id,
// unique in the cluster): Create succeeds on one node only. Claims are
// made in order on one goroutine, so a participant's track_unpublished
// still goes before its participant_left, as on one node. A claim that
// the store does not take within claimWait (a bus cut) is sent anyway:
// twice is better than never. Claims expire after claimTTL when the
// bucket allows per-key TTLs.

// Claimed webhook events (the <event> of a claim key).
const (
	OnceParticipantLeft  = "pl"
	OnceTrackUnpublished = "tu"
)

const (
	claimWait = 5 * time.Second
	claimTTL  = 24 * time.Hour
	// claimFlush bounds how long Close waits for the queued claims.
	claimFlush = 5 * time.Second
)

func claimKey(event, id string) string { return "h." + event + "." + enc(id) }

type hookJob struct {
	event, id string
	send      func()
}

// hookQueue is the queue of claims, worked by one goroutine.
type hookQueue struct {
	mu      sync.Mutex
	jobs    []hookJob
	running bool
	idle    chan struct{} // closed when the queue empties (nil while idle)
}

// Once calls send if this node is the first of the cluster to claim the
// webhook event for id (OnceParticipantLeft, OnceTrackUnpublished); it
// returns at once, send is called later on the queue's goroutine.
func (n *Node) Once(event, id string, send func()) {
	q := &n.hooks
	q.mu.Lock()
	q.jobs = append(q.jobs, hookJob{event, id, send})
	if q.running {
		q.mu.Unlock()
		return
	}
	q.running = true
	q.idle = make(chan struct{})
	q.mu.Unlock()
	go n.runHooks()
}

func (n *Node) runHooks() {
	q := &n.hooks
	for {
		q.mu.Lock()
		if len(q.jobs) == 0 {
			q.running = false
			close(q.idle)
			q.idle = nil
			q.mu.Unlock()
			return
		}
		j := q.jobs[0]
		q.jobs = q.jobs[1:]
		q.mu.Unlock()
		if j.event == "" || n.claim(j.event, j.id) {
			j.send()
		}
	}
}

// claim creates the event's claim key: false when another node has it.
func (n *Node) claim(event, id string) bool {
	var opts []jetstream.KVCreateOpt
	if n.bus.markerTTL {
		opts = append(opts, jetstream.KeyTTL(claimTTL))
	}
	ctx, cancel := context.WithTimeout(context.Background(), claimWait)
	defer cancel()
	taken := false
	err := n.retryCtx(ctx, kvTimeout, func(ctx context.Context) error {
		_, err := n.bus.kv.Create(ctx, claimKey(event, id), []byte(n.id), opts...)
		if errors.Is(err, jetstream.ErrKeyExists) {
			taken = true
			return nil
		}
		return err
	})
	switch {
	case taken:
		n.log.Debug("webhook already sent by another node", "event", event, "id", id)
		return false
	default:
		n.log.Warn("webhook claim not made: sent anyway", "event", event, "id", id, "err", err)
		return true
	}
}

// afterHooks calls send after the claims queued before it: room_finished
// goes after the participant_left of the room's last members, as on one
// node.
func (n *Node) afterHooks(send func()) { n.Once("", "", send) }

// flushHooks waits (at most claimFlush) for the queued claims, before the
// bus closes.
func (n *Node) flushHooks() {
	n.hooks.mu.Lock()
	idle := n.hooks.idle
	n.hooks.mu.Unlock()
	if idle == nil {
		return
	}
	select {
	case <-idle:
	case <-time.After(claimFlush):
		n.log.Warn("webhook claims still queued at close")
	}
}

// deadTracks reports a dead node's tracks unpublished (before its stubs'
// tracks end here): every live node with a part of the room knows them,
// the claim makes one of them send each. A node without a part of the
// room knows none; when no live node has one, nobody sends them.
func (n *Node) deadTracks(node string) {
	if n.rooms == nil || n.opts.OnTrackGone == nil {
		return
	}
	for _, t := range n.rooms.NodeTracks(node) {
		n.Once(OnceTrackUnpublished, t.Track.ID, func() { n.opts.OnTrackGone(t) })
	}
}
