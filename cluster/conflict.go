package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"time"
)

// After a refused compare-and-set. nats-server refuses a write to a key
// whose subject has a write still in flight (proposed to the stream's
// replicas, not yet applied: error 10164, "wrong last sequence") before
// its leader stores that write. So the leader's value read right after
// the refusal may still be the one the refused write was based on: "none"
// for a key another node is creating at that moment. A loop that read
// that and tried again at once was refused again, as many times as it
// could try in the meantime (casRetries, 100, gone in a few milliseconds
// on a loaded machine: "too much contention", a join answered 503), or
// decided on a state that was already replaced. Every such loop reads,
// after a refusal, through leaderAfterConflict: the leader's value once it
// holds another revision than the refused write's.

// conflictSettle bounds the wait for the write a compare-and-set lost to:
// a write in flight is applied within milliseconds, or within a stream
// leader election when the leader changes; after conflictSettle the value
// the leader has is taken as it is (the loop then tries again).
const conflictSettle = 2 * time.Second

// leaderAfterConflict returns key's newest message as the stream leader
// has it (nil: absent or deleted), once its revision is not rev: rev is
// the revision a refused compare-and-set expected (0 for a create). It
// waits at most conflictSettle, and within ctx.
func (n *Node) leaderAfterConflict(ctx context.Context, key string, rev uint64) (*storedMsg, error) {
	settle := time.Now().Add(conflictSettle)
	for wait := time.Millisecond; ; wait = min(2*wait, 50*time.Millisecond) {
		m, err := n.leaderGet(ctx, "$KV."+roomsBucket+"."+key)
		if err != nil {
			return nil, err
		}
		if m != nil && m.deleted() {
			m = nil
		}
		cur := uint64(0)
		if m != nil {
			cur = m.Seq
		}
		if cur != rev || time.Now().After(settle) {
			return m, nil
		}
		select {
		case <-ctx.Done():
			return m, nil
		case <-time.After(wait):
		}
	}
}

// getJSONAfterConflict is getJSON after a compare-and-set of key at
// revision rev (0: a create) was refused (leaderAfterConflict).
func (n *Node) getJSONAfterConflict(ctx context.Context, key string, rev uint64, v any) (uint64, error) {
	m, err := n.leaderAfterConflict(ctx, key, rev)
	if err != nil || m == nil {
		return 0, err
	}
	if json.Unmarshal(m.Data, v) != nil {
		return m.Seq, errors.New("room state: unreadable value of " + key)
	}
	return m.Seq, nil
}
