package cluster

import "sync"

// Removals that failed. A member's key is deleted by its leave (or by the
// undo of a failed join, or a purge); when the store cannot be reached for
// longer than a change waits for it (Options.StoreWait: this node cut off
// from the bus), the deletion gives up. The key would then stay for good —
// unless the cut outlasted the resume window, when the others purge this
// node's members — holding a place in a limited room, listed by every node's
// room state, and keeping the room from ever closing. So the removal is
// remembered and tried again each second while the bus is up, until it
// lands or finds the key gone.

// removals are the member keys whose deletion failed, by key.
type removals struct {
	mu      sync.Mutex
	keys    map[string]removal
	running bool // a retry pass is under way
}

type removal struct{ room, id string }

func (r *removals) add(key, room, id string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.keys == nil {
		r.keys = map[string]removal{}
	}
	r.keys[key] = removal{room: room, id: id}
}

func (r *removals) done(key string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.keys, key)
}

// start returns the pending removals and marks a pass under way; nil when
// there are none or a pass runs already.
func (r *removals) start() map[string]removal {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.running || len(r.keys) == 0 {
		return nil
	}
	r.running = true
	out := make(map[string]removal, len(r.keys))
	for k, v := range r.keys {
		out[k] = v
	}
	return out
}

func (r *removals) finish() {
	r.mu.Lock()
	r.running = false
	r.mu.Unlock()
}

// retryRemovals tries the failed removals again in the background, while
// the bus connection is up (runMaintenance calls it each second). A room
// that had no member left after one of them is marked empty as a leave
// would (and closed after the empty timeout).
func (n *Node) retryRemovals() {
	if !n.bus.nc.IsConnected() {
		return
	}
	pending := n.unremoved.start()
	if pending == nil {
		return
	}
	if !n.spawn(func() {
		defer n.unremoved.finish()
		for key, rm := range pending {
			select {
			case <-n.stop:
				return
			default:
			}
			if _, ok := n.removeMember(rm.room, key, rm.id); ok { // done, or added back for the next pass
				n.log.Info("room state: removed a member whose removal had failed", "room", rm.room, "member", rm.id)
				n.maybeEmpty(rm.room, nil, 0)
			}
		}
	}) {
		n.unremoved.finish()
	}
}
