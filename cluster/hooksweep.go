package cluster

import (
	"context"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Claim keys (hookonce.go) are created once and never deleted by their
// claimer: a node that comes back late must still find them. They expire
// after claimTTL through a per-key TTL when the bucket allows one
// (nats-server 2.11+, the embedded one). A bucket without it (an older
// external NATS, or a bucket an operator made without LimitMarkerTTL)
// would keep one key per participant and track that ever left, so every
// node sweeps them: it notes the stream's last sequence every
// claimSweepEvery, and purges the claim keys written up to a note older
// than claimTTL. A purge with a subject filter removes the messages
// outright (no deletion marker is left), and purging twice (every node
// does it) is harmless. A claim lives claimTTL to claimTTL +
// claimSweepEvery; a node that restarts starts its notes again, the others
// keep theirs.

// claimSweepEvery is how often a node notes the stream's last sequence.
const claimSweepEvery = time.Hour

// claimSubjects are the stream subjects of every claim key.
const claimSubjects = "$KV." + roomsBucket + ".h.>"

type sweepMark struct {
	at  time.Time
	seq uint64
}

// claimSweep is a node's notes of the stream's last sequence.
type claimSweep struct {
	mu    sync.Mutex
	marks []sweepMark
}

// runClaimSweep sweeps the claim keys while the node runs, when the
// bucket has no per-key TTL.
func (n *Node) runClaimSweep() {
	if n.bus.markerTTL {
		return
	}
	n.log.Info("the room state bucket has no per-key TTL: webhook claim keys are swept by the nodes", "ttl", claimTTL)
	tick := time.NewTicker(claimSweepEvery)
	defer tick.Stop()
	for {
		n.sweepClaims(time.Now())
		select {
		case <-n.stop:
			return
		case <-tick.C:
		}
	}
}

// sweepClaims notes the stream's last sequence at now and purges the
// claim keys written up to the newest note at least claimTTL old.
func (n *Node) sweepClaims(now time.Time) {
	s := &n.claimSweep
	s.mu.Lock()
	defer s.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), kvTimeout)
	defer cancel()
	st, err := n.bus.stream(ctx)
	if err != nil {
		n.log.Debug("webhook claims not swept", "err", err)
		return
	}
	info, err := st.Info(ctx)
	if err != nil {
		n.log.Debug("webhook claims not swept", "err", err)
		return
	}
	s.marks = append(s.marks, sweepMark{now, info.State.LastSeq})
	var cut uint64
	for len(s.marks) > 0 && now.Sub(s.marks[0].at) >= claimTTL {
		cut = s.marks[0].seq
		s.marks = s.marks[1:]
	}
	if cut == 0 {
		return
	}
	if err := st.Purge(ctx, jetstream.WithPurgeSubject(claimSubjects), jetstream.WithPurgeSequence(cut+1)); err != nil {
		n.log.Warn("webhook claims not swept", "upTo", cut, "err", err)
		s.marks = append([]sweepMark{{now.Add(-claimTTL), cut}}, s.marks...) // try again next time
	}
}
