package cluster

import (
	"sync"
	"time"

	"github.com/starling-rtc/starling/protocol"
	"github.com/starling-rtc/starling/room"
)

// Joins and leaves of one room on this node are written to the room's
// state together: while one compare-and-set write is on its way, the
// changes that arrive meanwhile queue and go in the next write, applied in
// order with the same checks as one at a time. So under a join storm a
// room's entry is written by at most one writer per node at a time, and
// compare-and-set conflicts grow with the number of nodes, not with the
// join rate (docs/cluster.md "Figures").

// roomOp is one queued change: a join (answered on done) or a leave.
type roomOp struct {
	join bool
	m    room.Member
	max  int
	done chan opResult // joins only, buffered
}

type opResult struct {
	sid string
	err error
}

// batcher holds each room's queued changes; a room's key is present while
// a writer goroutine runs for it.
type batcher struct {
	mu      sync.Mutex
	pending map[string][]*roomOp
}

// submit queues op and starts the room's writer if none runs.
func (n *Node) submit(name string, op *roomOp) {
	b := &n.batch
	b.mu.Lock()
	if b.pending == nil {
		b.pending = map[string][]*roomOp{}
	}
	q, running := b.pending[name]
	b.pending[name] = append(q, op)
	b.mu.Unlock()
	if !running {
		n.wg.Add(1)
		go n.flush(name)
	}
}

// flush writes the room's queued changes, one batch per write, until none
// is left.
func (n *Node) flush(name string) {
	defer n.wg.Done()
	b := &n.batch
	for {
		b.mu.Lock()
		ops := b.pending[name]
		if len(ops) == 0 {
			delete(b.pending, name)
			b.mu.Unlock()
			return
		}
		b.pending[name] = []*roomOp{}
		b.mu.Unlock()
		n.apply(name, ops)
	}
}

// apply writes a batch with one compare-and-set (retried on conflict) and
// answers its joins.
func (n *Node) apply(name string, ops []*roomOp) {
	res := make([]opResult, len(ops))
	var created, emptied bool
	var replaced []room.Member
	st, err := n.update(name, func(st *roomState, exists bool) error {
		created, emptied, replaced = false, false, replaced[:0]
		clear(res)
		changed := false
		for i, op := range ops {
			if !op.join {
				if exists && removeMember(st, op.m.ID) {
					changed = true
				}
				continue
			}
			if !created && (!exists || st.SID == "" || (len(st.Members) == 0 && st.EmptySince > 0 &&
				time.Since(time.UnixMilli(st.EmptySince)) > n.opts.EmptyTimeout)) {
				*st = roomState{SID: newSID()}
				created, changed = true, true
			}
			// A new slice: a refused join leaves the members as they were.
			kept := make([]room.Member, 0, len(st.Members)+1)
			var rep []room.Member
			for _, o := range st.Members {
				switch {
				case o.ID == op.m.ID:
				case o.Identity == op.m.Identity:
					rep = append(rep, o)
				default:
					kept = append(kept, o)
				}
			}
			if op.max > 0 && len(kept) >= op.max {
				res[i].err = protocol.Errorf(protocol.CodeTooLarge, "room %q is full: %d participants", name, op.max)
				continue
			}
			st.Members = append(kept, op.m)
			st.EmptySince = 0
			replaced = append(replaced, rep...)
			changed = true
		}
		if !changed {
			return errNoChange
		}
		if len(st.Members) == 0 {
			st.EmptySince = time.Now().UnixMilli()
			emptied = true
		}
		return nil
	})
	if err != nil {
		n.log.Error("cluster room state", "room", name, "changes", len(ops), "err", err)
	}
	for i, op := range ops {
		if !op.join {
			continue
		}
		switch {
		case err != nil:
			res[i].err = protocol.Errorf(protocol.CodeInternal, "cluster room state is unavailable")
		case res[i].err == nil:
			res[i].sid = st.SID
		}
		op.done <- res[i]
	}
	if err != nil {
		return
	}
	if created && n.opts.OnRoomStarted != nil {
		n.log.Info("room opened in the cluster", "room", name, "sid", st.SID)
		n.opts.OnRoomStarted(name, st.SID)
	}
	for _, o := range replaced {
		if o.Node != n.id { // a replaced member here is ended by the room itself
			n.Control(o.Node, name, room.Event{Type: room.CtlKick, ParticipantID: o.ID, Reason: protocol.ReasonDuplicate})
		}
	}
	if emptied {
		n.wg.Add(1)
		go func() { defer n.wg.Done(); n.closeLater(name) }()
	}
}

// removeMember removes member id from st; false if it is not there.
func removeMember(st *roomState, id string) bool {
	for j, o := range st.Members {
		if o.ID == id {
			st.Members = append(st.Members[:j:j], st.Members[j+1:]...)
			return true
		}
	}
	return false
}
