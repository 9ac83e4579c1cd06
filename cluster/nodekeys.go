package cluster

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Node keys: a node that is killed before any other node heard its first
// heartbeat (about a second after its start) never expires anywhere, since
// no node knows it. When a live node followed one of its rooms, the
// members in the room's state named it (neverHeard); but the rooms only it
// had kept its members and track keys for good, without their webhooks.
// So each node writes a key of its own, n.<node>, at its start, before it
// takes joins, and deletes it when it shuts down; every node watches these
// keys (one watch of n.*), so the others know of a node from its key alone
// and declare it gone like one whose heartbeats stopped: its key seen for
// twice the heartbeat expiry, never heard, and no answer to a ping (a live
// node whose heartbeats are slow to arrive answers it). The node that purges a
// gone node's members deletes its key afterwards (the run declared gone
// only: a new run of the same id writes its own).

// nodeKey is a node's key in the room state bucket.
func nodeKey(id string) string { return "n." + enc(id) }

// nodeRun is the value of a node key.
type nodeRun struct {
	ID        string `json:"id"`
	StartedAt int64  `json:"startedAt"` // unix ms, the run's NodeInfo.StartedAt
}

// nodeKeys is the watch's view of the node keys: each node's run.
type nodeKeys struct {
	mu   sync.Mutex
	runs map[string]nodeRun
	// vanished holds when each node's key was deleted, as the watch saw
	// it (vanishedFor): neverHeard declares such a node gone at once.
	vanished map[string]time.Time
	// restart ends the watch so that it starts again (a whole read): the
	// bus came back, or a node gone may have held its consumer.
	restart chan struct{}
}

// writeNodeKey writes this run's key, waiting for the store up to the
// store wait; on failure it keeps trying in the background.
func (n *Node) writeNodeKey() {
	data, _ := json.Marshal(nodeRun{ID: n.id, StartedAt: n.started.UnixMilli()})
	put := func(ctx context.Context) error {
		_, err := n.bus.kv.Put(ctx, nodeKey(n.id), data)
		return err
	}
	if err := n.retry(put); err == nil {
		return
	}
	n.log.Warn("room state: this node's key not written yet (trying again)")
	n.spawn(func() {
		for {
			select {
			case <-n.stop:
				return
			case <-time.After(time.Second):
			}
			if n.retry(put) == nil {
				return
			}
		}
	})
}

// deleteNodeKey deletes this run's key at shutdown, briefly: the last
// nodes of a cluster stopping have no store majority left, and a key left
// behind only makes the others declare this node gone once more. Alone
// (the others stopped meanwhile: lastout.go), it ends at once.
func (n *Node) deleteNodeKey() {
	ctx, cancel := context.WithTimeout(n.lastOut, 500*time.Millisecond)
	defer cancel()
	var run nodeRun
	if rev, err := n.getJSON(ctx, nodeKey(n.id), &run); err == nil && rev != 0 && run.StartedAt == n.started.UnixMilli() {
		_, _ = n.kvDelete(ctx, nodeKey(n.id), rev)
	}
}

// knownNodes lists the other nodes that have a key.
func (n *Node) knownNodes() []string {
	n.nkeys.mu.Lock()
	defer n.nkeys.mu.Unlock()
	out := make([]string, 0, len(n.nkeys.runs))
	for id := range n.nkeys.runs {
		if id != n.id {
			out = append(out, id)
		}
	}
	return out
}

// nodeRunOf is the run of node id as its key says (StartedAt 0: no key).
func (n *Node) nodeRunOf(id string) nodeRun {
	n.nkeys.mu.Lock()
	defer n.nkeys.mu.Unlock()
	return n.nkeys.runs[id]
}

// restartNodeKeys makes the node keys' watch start again.
func (n *Node) restartNodeKeys() {
	select {
	case n.nkeys.restart <- struct{}{}:
	default:
	}
}

// watchNodeKeys keeps n.nkeys up to date until the node stops.
func (n *Node) watchNodeKeys() {
	backoff := 250 * time.Millisecond
	for {
		ctx, cancel := context.WithCancel(context.Background())
		slow := time.AfterFunc(kvTimeout, cancel)
		created := make(chan struct{})
		go func() { // the node's Close ends a creation the store is slow to answer
			select {
			case <-n.stop:
				cancel()
			case <-created:
			}
		}()
		kw, err := n.bus.kv.WatchFiltered(ctx, []string{"n.*"})
		close(created)
		if slow.Stop() && err == nil {
			backoff = 250 * time.Millisecond
			n.consumeNodeKeys(kw)
		} else {
			backoff = min(2*backoff, 4*time.Second)
		}
		cancel() // ends the watch's subscription (not kw.Stop: see watchRoom)
		select {
		case <-n.stop:
			return
		case <-time.After(backoff):
		}
	}
}

// nodeKeysCheck is the period of the node keys' watch's check that it
// has missed nothing (see consumeNodeKeys).
const nodeKeysCheck = 2 * time.Second

// consumeNodeKeys applies a watch's values until it ends or must restart;
// its first values replace what was known.
//
// The watch is the only way this node learns of a node it never heard,
// and it can stall without a word: its consumer (an ordered one, on one
// server of the bucket's stream, picked at random) may live on the very
// node that died, and the client recreates it only after missing its
// heartbeats for 10 s, and then quietly not at all while the JetStream
// meta layer has no leader (that node led it), trying again 10 s later.
// A node killed about a second after another node's start, its key not
// yet delivered there, was then not found gone there within 30 s. So
// every nodeKeysCheck the watch asks the store for the newest change of
// the node keys (one direct read of the stream's last message on n.*,
// which any replica answers, leader or not) and starts again if that
// change has not reached it a second later (confirmAfter).
func (n *Node) consumeNodeKeys(kw jetstream.KeyWatcher) {
	runs := map[string]nodeRun{}
	initial := true
	check := time.NewTimer(nodeKeysCheck)
	defer check.Stop()
	var delivered, behind uint64 // the newest change applied; one the last check found missing
	for {
		select {
		case <-n.stop:
			return
		case <-n.nkeys.restart:
			return
		case <-check.C:
			if behind != 0 && delivered < behind {
				n.log.Info("node keys' watch missed changes: reading them again")
				return
			}
			behind = 0
			ctx, cancel := context.WithTimeout(context.Background(), nodeKeysCheck)
			seq := n.lastChangeOf(ctx, []string{"n.*"})
			cancel()
			if seq > delivered {
				behind = seq // in flight, or missed: look again in a second
				check.Reset(confirmAfter)
			} else {
				check.Reset(nodeKeysCheck)
			}
		case e, ok := <-kw.Updates():
			if !ok {
				return
			}
			if e != nil && n.hiddenKey(e.Key()) {
				continue // tests only: as if the watch's consumer died before it delivered the key
			}
			if e != nil {
				delivered = max(delivered, e.Revision())
			}
			if e == nil { // the current values are in
				initial = false
				n.nkeys.mu.Lock()
				n.nkeys.runs = runs
				n.nkeys.mu.Unlock()
				continue
			}
			raw, err := base64.RawURLEncoding.DecodeString(strings.TrimPrefix(e.Key(), "n."))
			if err != nil {
				continue
			}
			id := string(raw)
			var run nodeRun
			put := e.Operation() == jetstream.KeyValuePut && json.Unmarshal(e.Value(), &run) == nil && run.ID == id
			n.noteVanished(id, put, e.Created())
			if initial {
				if put {
					runs[id] = run
				} else {
					delete(runs, id)
				}
				continue
			}
			n.nkeys.mu.Lock()
			if put {
				n.nkeys.runs[id] = run
			} else {
				delete(n.nkeys.runs, id)
			}
			n.nkeys.mu.Unlock()
		}
	}
}

// vanishedFor is how long a node whose key was deleted stays a candidate
// for neverHeard.
const vanishedFor = 30 * time.Second

// noteVanished notes a delivery of node id's key: a deletion made within
// vanishedFor (a watch that starts again delivers older ones too), or a
// put, which ends an earlier one (a new run).
//
// A node known here only from its key is declared gone 7 s after the key
// reached this node (neverHeard); another node whose watch delivered it
// sooner declares it gone sooner, purges its members, and deletes its
// key. A node that had not reached its 7 s by then lost its only sign of
// the dead node, and never found it gone: its stubs stayed, and its rooms'
// slots held by the dead node's joins were never freed
// (TestDeadJoinSlotFreed, once: not within 30 s). Seen here, the deletion
// says another node found the node gone; a node that shut down cleanly
// said goodbye first, and is known gone already.
func (n *Node) noteVanished(id string, put bool, at time.Time) {
	n.nkeys.mu.Lock()
	defer n.nkeys.mu.Unlock()
	if n.nkeys.vanished == nil {
		n.nkeys.vanished = map[string]time.Time{}
	}
	switch {
	case put:
		delete(n.nkeys.vanished, id)
	case id != n.id && time.Since(at) < vanishedFor:
		n.nkeys.vanished[id] = at
	}
}

// vanishedNodes lists the other nodes whose key was deleted within
// vanishedFor, forgetting older deletions.
func (n *Node) vanishedNodes() []string {
	n.nkeys.mu.Lock()
	defer n.nkeys.mu.Unlock()
	var out []string
	for id, at := range n.nkeys.vanished {
		if time.Since(at) >= vanishedFor {
			delete(n.nkeys.vanished, id)
			continue
		}
		out = append(out, id)
	}
	return out
}

// dropNodeKey deletes the key of a gone node once its members are purged,
// if it is still the key of run (a new run of the id writes its own).
func (n *Node) dropNodeKey(node string, run nodeRun) {
	if run.StartedAt == 0 {
		return
	}
	_ = n.retry(func(ctx context.Context) error {
		var cur nodeRun
		rev, err := n.getJSON(ctx, nodeKey(node), &cur)
		if err != nil || rev == 0 || cur.StartedAt != run.StartedAt {
			return err
		}
		_, err = n.kvDelete(ctx, nodeKey(node), rev)
		if isConflict(err) {
			return nil // rewritten meanwhile: a new run
		}
		return err
	})
}

// answersPing reports whether node answers a ping over the bus, within
// 2 s: a live node on a loaded machine may be slow to.
func (n *Node) answersPing(node string) bool {
	_, err := n.bus.nc.Request(nodeSubject(node, "ping"), nil, 2*time.Second)
	return err == nil || n.reg.alive(node)
}

// lostNodeKeys holds the node keys whose first watch delivery each node
// of this process drops (and which nodes did): tests only
// (export_test.go), for a watch whose consumer died before it delivered
// the key.
var lostNodeKeys sync.Map // key -> *sync.Map of the node ids that dropped it

// hiddenKey reports whether this node's watch drops this delivery of
// key (tests only).
func (n *Node) hiddenKey(key string) bool {
	if _, ok := n.hiddenKeys.Load(key); ok {
		return true
	}
	return lostNodeKey(n.id, key)
}

// lostNodeKey reports whether node self's watch drops this delivery of
// key: the first one only.
func lostNodeKey(self, key string) bool {
	v, ok := lostNodeKeys.Load(key)
	if !ok {
		return false
	}
	_, dropped := v.(*sync.Map).LoadOrStore(self, true)
	return !dropped
}
