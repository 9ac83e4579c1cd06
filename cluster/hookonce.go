package cluster

import (
	"bytes"
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
// still goes before its participant_left, as on one node. A claim the
// store does not take (the node is cut off from the bus, or the store
// elects a new leader) is held, and tried again until the store answers:
// a participant who leaves a node cut off from the bus gets its
// participant_left once the link is back, from that node or, if another
// node purged it meanwhile and sent it, from none. Before, a claim not
// made within 5 s was sent anyway, and such a leave was reported twice.
// Only a node shutting down with claims still held after claimFlush sends
// them unclaimed (twice is better than never). Claims expire after
// claimTTL: with a per-key TTL when the bucket allows one, else swept
// (hooksweep.go).

// Claimed webhook events (the <event> of a claim key).
const (
	OnceParticipantLeft  = "pl"
	OnceTrackUnpublished = "tu"
)

const (
	// claimWait: a claim held longer than this is logged.
	claimWait = 5 * time.Second
	claimTTL  = 24 * time.Hour
	// claimFlush bounds how long Close waits for the queued claims.
	claimFlush = 5 * time.Second
	// claimRetryMax bounds the pause between two tries of a held claim.
	claimRetryMax = 2 * time.Second
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
	// giveUp is closed by Close when claims are still held after
	// claimFlush: the rest are sent unclaimed.
	giveUp     chan struct{}
	giveUpOnce sync.Once
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
		send, ok := true, true
		if j.event != "" {
			send, ok = n.claim(j.event, j.id)
		}
		if !ok {
			return // killed (Abort): a dead process sends nothing more
		}
		if send {
			j.send()
		}
	}
}

// claim creates the event's claim key: send is false when another node
// has it. It holds the claim while the store does not answer, trying
// again until it does; ok is false when the node was killed meanwhile.
// A node closing sends what it still holds (giveUp).
func (n *Node) claim(event, id string) (send, ok bool) {
	var opts []jetstream.KVCreateOpt
	if n.bus.markerTTL {
		opts = append(opts, jetstream.KeyTTL(claimTTL))
	}
	// The claim's value names this node and this claim: a try whose write
	// landed while its answer was lost (a timeout) is recognised on the
	// next try, refused as the key exists, as this claim's own. It was
	// taken for another node's, and nobody sent the webhook.
	mine := []byte(n.id + " " + newSID()[3:])
	began := time.Now()
	warned := false
	pause := 100 * time.Millisecond
	// Each try ends at once when the node stops or gives up.
	parent, cancelAll := context.WithCancel(context.Background())
	defer cancelAll()
	go func() {
		select {
		case <-n.stop:
		case <-n.hooks.giveUp:
		case <-parent.Done():
		}
		cancelAll()
	}()
	for {
		ctx, cancel := context.WithTimeout(parent, kvTimeout)
		_, err := n.bus.kv.Create(ctx, claimKey(event, id), mine, opts...)
		if err == nil && n.loseClaimAnswer.Swap(false) {
			err = context.DeadlineExceeded // tests: the write landed, its answer is lost
		}
		if errors.Is(err, jetstream.ErrKeyExists) {
			// The holder, once the leader has the write this one lost to
			// (conflict.go): it may be an earlier try of this claim.
			m, gerr := n.leaderAfterConflict(ctx, claimKey(event, id), 0)
			switch {
			case gerr != nil:
				err = gerr // not known: try again
			case m == nil:
				err = errRetry // released meanwhile (its marker expired): try again
			case bytes.Equal(m.Data, mine):
				err = nil
			}
		}
		cancel()
		switch {
		case err == nil:
			n.owned.hookClaimed(claimKey(event, id), mine) // written back if the bucket is lost (owned.go)
			if warned {
				n.log.Info("webhook claim made after waiting for the room state store", "event", event, "id", id, "waited", time.Since(began).Round(time.Millisecond))
			}
			return true, true
		case errors.Is(err, jetstream.ErrKeyExists):
			n.log.Debug("webhook already sent by another node", "event", event, "id", id)
			return false, true
		}
		if !warned && time.Since(began) > claimWait {
			warned = true
			n.log.Warn("webhook claim held: the room state store does not answer; sent once it does", "event", event, "id", id, "err", err)
		}
		select {
		case <-n.hooks.giveUp: // before stop: Close gives up, then stops
			n.log.Warn("webhook claim not made before close: sent anyway", "event", event, "id", id, "err", err)
			return true, true
		case <-n.stop:
			select {
			case <-n.hooks.giveUp:
				return true, true
			default:
				return false, false
			}
		case <-time.After(pause):
		}
		pause = min(2*pause, claimRetryMax)
	}
}

// afterHooks calls send after the claims queued before it: room_finished
// goes after the participant_left of the room's last members, as on one
// node.
func (n *Node) afterHooks(send func()) { n.Once("", "", send) }

// flushHooks waits (at most claimFlush) for the queued claims, before the
// bus closes; claims still held then (the store does not answer), and any
// queued later, are sent unclaimed.
func (n *Node) flushHooks() {
	defer n.hooks.giveUpOnce.Do(func() { close(n.hooks.giveUp) }) // from now on, nothing is held
	n.hooks.mu.Lock()
	idle := n.hooks.idle
	n.hooks.mu.Unlock()
	if idle == nil {
		return
	}
	select {
	case <-idle:
		return
	case <-time.After(claimFlush):
	}
	n.hooks.giveUpOnce.Do(func() { close(n.hooks.giveUp) })
	select {
	case <-idle:
	case <-time.After(claimFlush):
		n.log.Warn("webhook claims still queued at close")
	}
}

// deadTracks reports a dead node's tracks unpublished (before its stubs'
// tracks end here): every live node with a part of the room knows them,
// the claim makes one of them send each. The tracks of a room no live
// node had a part of are known from their keys in the room state
// (trackkeys.go), read in the background: every live node reads them
// (and deletes the keys), and the claim makes one send each.
func (n *Node) deadTracks(node string) {
	if n.rooms != nil && n.opts.OnTrackGone != nil {
		for _, t := range n.rooms.NodeTracks(node) {
			n.Once(OnceTrackUnpublished, t.Track.ID, func() { n.opts.OnTrackGone(t) })
		}
	}
	n.spawn(func() { n.storedTracksGone(node) })
}
