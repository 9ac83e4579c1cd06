package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/starling-rtc/starling/room"
)

// Room events travel on one subject per room, starling.room.<key>.ev:
// only the nodes with a local part of the room subscribe. Requests for one
// node (snapshots, commands, relay exports) go to starling.node.<id>.<what>.

func roomSubject(name string) string { return "starling.room." + roomKey(name) + ".ev" }

// roomSubs are the room subscriptions of this node, by room name.
type roomSubs struct {
	mu      sync.Mutex
	subs    map[string]*nats.Subscription
	watches map[string]*roomWatch // the watch of each followed room's state (watch.go)
}

func (s *roomSubs) init() {
	s.subs = map[string]*nats.Subscription{}
	s.watches = map[string]*roomWatch{}
}

// follow subscribes to a room's events (idempotent) and flushes, so the
// subscription is in place before this node changes the room's state.
func (s *roomSubs) follow(n *Node, name string) {
	s.mu.Lock()
	if s.subs[name] != nil {
		s.mu.Unlock()
		return
	}
	sub, err := n.bus.nc.Subscribe(roomSubject(name), func(m *nats.Msg) { n.onRoomEvent(name, m) })
	if err != nil {
		s.mu.Unlock()
		n.log.Warn("cannot follow room events", "room", name, "err", err)
		return
	}
	_ = sub.SetPendingLimits(-1, 64<<20)
	s.subs[name] = sub
	s.holdLocked(n, name) // the room's watch (watch.go)
	s.mu.Unlock()
	// Bounded: a connection whose link is cut without a word (its TCP
	// silent) takes nats.go's 10 s to give up on a flush, and the join
	// behind it then waited that before its own store wait (13 s with a 3
	// s store wait). A subscription still on its way when the state
	// changes is what the watch's anti-entropy repairs (watch.go).
	_ = n.bus.nc.FlushTimeout(followFlushWait)
}

// followFlushWait bounds follow's wait for the server to have the room's
// subscription.
const followFlushWait = 2 * time.Second

func (s *roomSubs) unfollow(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if sub := s.subs[name]; sub != nil {
		_ = sub.Unsubscribe()
		delete(s.subs, name)
		s.releaseLocked(name)
	}
}

func (s *roomSubs) closeAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for name, sub := range s.subs {
		_ = sub.Unsubscribe()
		delete(s.subs, name)
	}
	for name, w := range s.watches {
		close(w.stop)
		delete(s.watches, name)
	}
}

// NodeID implements room.Bus.
func (n *Node) NodeID() string { return n.id }

// Emit implements room.Bus: one event of a local participant, in order.
func (n *Node) Emit(name string, ev room.Event) {
	data, err := json.Marshal(ev)
	if err != nil {
		return
	}
	if err := n.bus.nc.Publish(roomSubject(name), data); err != nil {
		n.log.Warn("room event not published", "room", name, "type", ev.Type, "err", err)
	}
}

// ctlMsg is a command for one node about one of its participants.
type ctlMsg struct {
	Room string `json:"room"`
	// SID, when set, is the room instance the command is for: a part of a
	// newer instance of the room ignores it (closeroom.go).
	SID   string     `json:"sid,omitempty"`
	Event room.Event `json:"event"`
}

// Control implements room.Bus.
func (n *Node) Control(node, name string, ev room.Event) { n.control(node, name, ev, nil) }

// control sends a command to a node. A kick goes as a request: a node
// that is dead does not answer, and the participant is evicted without it
// (evictDead; replaced is the member a join replaced, whose key it
// deleted already).
func (n *Node) control(node, name string, ev room.Event, replaced *room.Member) {
	ev.Node = n.id
	data, _ := json.Marshal(ctlMsg{Room: name, Event: ev})
	if ev.Type != room.CtlKick || node == n.id {
		if err := n.bus.nc.Publish(nodeSubject(node, "ctl"), data); err != nil {
			n.log.Warn("command not sent", "node", node, "type", ev.Type, "err", err)
		}
		return
	}
	n.spawn(func() {
		_, err := n.bus.nc.Request(nodeSubject(node, "ctl"), data, handoffTimeout)
		if errors.Is(err, nats.ErrTimeout) {
			// Dying, or slow: dead once no longer heard (hbExpiry).
			for deadline := time.Now().Add(hbExpiry + hbInterval); n.reg.alive(node) && time.Now().Before(deadline); {
				select {
				case <-n.stop:
					return
				case <-time.After(250 * time.Millisecond):
				}
			}
			if !n.reg.alive(node) {
				err = nats.ErrNoResponders
			}
		}
		switch {
		case err == nil:
			return
		case errors.Is(err, nats.ErrNoResponders):
			n.evictDead(node, name, ev, replaced) // deadmembers.go
		default:
			n.log.Warn("command not sent", "node", node, "type", ev.Type, "err", err)
		}
	})
}

// Opened implements room.Bus: follow the room and fetch the other nodes'
// parts of it.
func (n *Node) Opened(r *room.Room) {
	n.rs.follow(n, r.Name())
	if !n.spawn(func() {
		defer r.Synced()  // the joins waiting for the other nodes' parts go on
		n.loadMixPrefs(r) // the admin's mix settings made before (mixprefs.go)
		n.reconcile(r, true)
	}) {
		r.Synced() // this node is closing: its joins are not held
	}
}

// Closed implements room.Bus: the local instance is gone.
func (n *Node) Closed(r *room.Room) {
	if n.rooms != nil && n.rooms.Room(r.Name()) != nil {
		return // a new instance follows it already
	}
	n.rs.unfollow(r.Name())
}

func (n *Node) onRoomEvent(name string, m *nats.Msg) {
	var ev room.Event
	if json.Unmarshal(m.Data, &ev) != nil || ev.Node == n.id || ev.Node == "" {
		return
	}
	if ev.Type == evMoving {
		n.noteMoving(name, ev.ParticipantID) // moving.go
		return
	}
	if f := n.eventHook.Load(); f != nil {
		(*f)(name, ev)
	}
	r := n.rooms.Room(name)
	if r == nil {
		return // no local part (yet): Opened fetches snapshots
	}
	if r.ApplyRemote(ev) {
		n.spawn(func() { n.requestSnapshot(r, ev.Node) })
	}
}

// subscribeNodeRequests answers snapshots and commands for this node.
func (n *Node) subscribeNodeRequests() error {
	if _, err := n.bus.nc.Subscribe(nodeSubject(n.id, "sync"), func(m *nats.Msg) {
		snap := room.NodeSnapshot{Node: n.id, Participants: []room.RemoteParticipant{}}
		if r := n.rooms.Room(string(m.Data)); r != nil {
			snap = r.Snapshot()
		}
		// The previous run's members wait to resume elsewhere: the other
		// nodes keep their stubs (prior.go).
		snap.Moved = append(snap.Moved, n.priorIn(string(m.Data))...)
		data, _ := json.Marshal(snap)
		_ = m.Respond(data)
	}); err != nil {
		return err
	}
	// Commands are applied in the order they were sent (two admin data
	// messages arrive in order), on one goroutine of their own: applying
	// one may close a participant, which must not hold up the bus.
	ctl := make(chan ctlMsg, 1024)
	n.spawn(func() {
		for {
			select {
			case c := <-ctl:
				if n.kickPrior(c.Room, c.Event) { // prior.go
					continue
				}
				if c.Event.Type == room.CtlCloseRoom {
					n.closeHeld() // tests: held until released (export_test.go)
				}
				if r := n.rooms.Room(c.Room); r != nil && (c.SID == "" || c.SID == r.SID()) {
					r.ApplyControl(c.Event)
				}
			case <-n.stop:
				return
			}
		}
	})
	if _, err := n.bus.nc.Subscribe(nodeSubject(n.id, "ctl"), func(m *nats.Msg) {
		if m.Reply != "" {
			_ = m.Respond(nil) // a kick asks: this node is alive (control)
		}
		var c ctlMsg
		if json.Unmarshal(m.Data, &c) != nil {
			return
		}
		select {
		case ctl <- c:
		case <-n.stop:
		}
	}); err != nil {
		return err
	}
	return n.subscribeExports() // see media.go
}

// requestSnapshot asks a node for its part of a room and applies it; a
// node that does not answer and no longer heartbeats is forgotten. A
// closing node stops waiting (its Close waits for this: up to 3 s at a
// test cluster's end, the other node already gone).
func (n *Node) requestSnapshot(r *room.Room, node string) {
	ctx, cancel := context.WithTimeout(n.stopped, 3*time.Second)
	defer cancel()
	msg, err := n.bus.nc.RequestWithContext(ctx, nodeSubject(node, "sync"), []byte(r.Name()))
	if n.stopped.Err() != nil {
		return
	}
	if err != nil {
		if !n.reg.alive(node) {
			r.ForgetNode(node)
		}
		return
	}
	var s room.NodeSnapshot
	if json.Unmarshal(msg.Data, &s) != nil || s.Node != node {
		return
	}
	r.ApplySnapshot(s)
}

// reconcile compares a room's state with the local room (reconcileState,
// watch.go); now asks at once for the parts of the room not known here
// (the room just opened on this node).
func (n *Node) reconcile(r *room.Room, now bool) {
	w := n.rs.watch(r.Name())
	if w == nil {
		return // not followed (any more)
	}
	// The watch started when this node joined, before its write: its
	// first values are usually in already.
	st, ok, ready := w.readyState(time.Second, n.stop)
	if !ready {
		st, ok = n.get(r.Name())
	}
	if !ok {
		return
	}
	n.reconcileState(r, w, st, now)
}
