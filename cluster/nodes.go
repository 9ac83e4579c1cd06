package cluster

import (
	"context"
	"encoding/json"
	"sort"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
)

const (
	subjHeartbeat = "starling.nodes.hb"     // every node's heartbeat
	subjBye       = "starling.nodes.bye"    // a node leaving cleanly
	subjLeft      = "starling.nodes.left"   // a drained node leaving: no longer one of the nodes (presence.go)
	hbInterval    = time.Second             // heartbeat period
	hbExpiry      = 3500 * time.Millisecond // a node silent this long is gone (< 5 s)
)

// NodeInfo is one node as GET /v1/nodes lists it. Every field is always
// sent (no omitempty): docs/admin-api.md lists them, and a client that
// reads n["self"] or n["relayAddr"] of another node (or of a single node,
// which has no relay) must find them, false or empty.
type NodeInfo struct {
	ID           string `json:"id"`
	URL          string `json:"url"`       // the node's signaling/HTTP base URL
	RelayAddr    string `json:"relayAddr"` // its media relay UDP address; "" without a cluster
	StartedAt    int64  `json:"startedAt"` // unix ms
	Rooms        int    `json:"rooms"`
	Participants int    `json:"participants"`     // connected to this node
	Tracks       int    `json:"tracks"`           // published on this node
	RelayedOut   int    `json:"relayedTracksOut"` // tracks this node relays to others
	RelayedIn    int    `json:"relayedTracksIn"`  // tracks this node receives by relay
	BusRTTMicros int64  `json:"busRttMicros"`     // round trip to a peer over the bus
	LastSeen     int64  `json:"lastSeen"`         // unix ms of its last heartbeat
	Self         bool   `json:"self"`
}

// registry keeps the nodes heard on the bus.
type registry struct {
	self  string
	mu    sync.Mutex
	nodes map[string]NodeInfo
	seen  map[string]time.Time
	since time.Time // when this node began to hear heartbeats (Alone)
	// started is each node's latest start time heard (StartedAt), kept
	// after it expires: a later one is a restart (restarted).
	started map[string]int64
}

// restarted notes n's start time and reports whether it is a new run of a
// node whose earlier run expire has not declared gone (killed and started
// again with the same id before that): the caller does, and expire will
// not (the earlier run is forgotten here at once).
func (g *registry) restarted(n NodeInfo) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.started == nil {
		g.started = map[string]int64{}
	}
	prev := g.started[n.ID]
	if n.StartedAt > prev {
		g.started[n.ID] = n.StartedAt
	}
	if _, listed := g.nodes[n.ID]; !listed || prev == 0 || n.StartedAt <= prev {
		return false
	}
	delete(g.nodes, n.ID)
	delete(g.seen, n.ID)
	return true
}

func newRegistry(self string) *registry {
	return &registry{self: self, nodes: map[string]NodeInfo{}, seen: map[string]time.Time{}}
}

func (g *registry) heard(n NodeInfo) {
	g.mu.Lock()
	defer g.mu.Unlock()
	now := time.Now()
	n.LastSeen = now.UnixMilli()
	g.nodes[n.ID] = n
	g.seen[n.ID] = now
}

func (g *registry) forget(id string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	delete(g.nodes, id)
	delete(g.seen, id)
}

// list returns the live nodes, sorted by id; expired ones are dropped.
func (g *registry) list() []NodeInfo {
	g.mu.Lock()
	defer g.mu.Unlock()
	now := time.Now()
	out := make([]NodeInfo, 0, len(g.nodes))
	for id, n := range g.nodes {
		if now.Sub(g.seen[id]) > hbExpiry {
			continue // expire() drops it and tells the rooms: deleting here would hide it from expire
		}
		n.Self = id == g.self
		out = append(out, n)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// silent returns the other nodes not heard for longer than hbExpiry: gone,
// or alive but their heartbeats late (confirmGone tells them apart).
func (g *registry) silent() []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	var out []string
	for id, t := range g.seen {
		if id != g.self && time.Since(t) > hbExpiry {
			out = append(out, id)
		}
	}
	return out
}

// drop forgets node id if it is still silent, and reports whether it did
// (false: heard meanwhile).
func (g *registry) drop(id string) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	t, ok := g.seen[id]
	if !ok || time.Since(t) <= hbExpiry {
		return false
	}
	delete(g.nodes, id)
	delete(g.seen, id)
	return true
}

// touch counts a sign of life of a listed node other than its heartbeat
// (it answered a ping) as one: alive for another hbExpiry.
func (g *registry) touch(id string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if t, ok := g.seen[id]; ok && time.Since(t) > hbExpiry {
		g.seen[id] = time.Now()
	}
}

// expire returns the silent nodes that are gone: those that do not answer
// a ping either, now forgotten. A node whose heartbeats are late but which
// answers is alive: its process or the machine stalled (the nodes of a
// test cluster share one process, and a starved machine holds them all
// for seconds at a time; the others' maintenance runs first when it
// resumes), or its heartbeats queue behind other bus traffic. Found gone,
// its participants would leave every room, and a second later (the
// resume window of the tests) its members be purged from the room state,
// their slots free: TestJoinStorm under -race once let 29 into a room of
// 22. A node that is gone does not answer: its process is dead (no
// responders, at once), or its bus link is cut (no answer in 2 s).
// Only while this node's own bus link has been up all along (busSteady):
// when it was cut off itself, the others found it gone and purged what
// it holds in the room state, and it must find them gone too (its watches
// resync and its track keys are written back when they are heard again,
// nodeBack), even though a ping sent during the cut, buffered until the
// link returned, may be answered. The pings go out at once: a node finds
// all the others silent at the same time, and waits 2 s, not 2 s for each.
func (n *Node) expire() []string {
	silent := n.reg.silent()
	answers := make([]bool, len(silent))
	if n.busSteady() {
		var wg sync.WaitGroup
		for i, id := range silent {
			wg.Add(1)
			go func() { defer wg.Done(); answers[i] = n.answersPing(id) }()
		}
		wg.Wait()
	}
	var gone []string
	for i, id := range silent {
		if answers[i] {
			n.reg.touch(id)
			n.silentAlive.Add(1)
			n.log.Info("node heard late: its heartbeats stopped arriving, but it answers", "silent", id)
			continue
		}
		if n.reg.drop(id) {
			gone = append(gone, id)
		}
	}
	return gone
}

// alive reports whether a node has been heard within the expiry.
func (g *registry) alive(id string) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	t, ok := g.seen[id]
	return ok && time.Since(t) <= hbExpiry
}

// runHeartbeats publishes this node's info every hbInterval and measures
// the bus round trip with a ping to another live node, until stop closes.
// Nothing else runs on this loop, so slow bus requests (runMaintenance)
// never delay a heartbeat and make the others think this node died.
func (n *Node) runHeartbeats(stop <-chan struct{}) {
	tick := time.NewTicker(hbInterval)
	defer tick.Stop()
	for {
		info := n.selfInfo()
		n.reg.heard(info)
		if data, err := json.Marshal(info); err == nil {
			_ = n.bus.nc.Publish(subjHeartbeat, data)
		}
		select {
		case <-stop:
			return
		case <-tick.C:
		}
	}
}

// runMaintenance, every heartbeat period: the bus round trip, nodes gone
// silent (their participants leave, their members are purged) and the
// state store's replicas. (The rooms' anti-entropy follows their watches:
// watch.go.)
func (n *Node) runMaintenance(stop <-chan struct{}) {
	tick := time.NewTicker(hbInterval)
	defer tick.Stop()
	unheard := unheardNodes{since: map[string]time.Time{}, done: map[string]bool{}}
	for i := 0; ; i++ {
		select {
		case <-stop:
			return
		case <-tick.C:
		}
		n.measureRTT()
		for _, id := range n.expire() {
			n.log.Warn("node gone: no heartbeat", "gone", id)
			n.foundGone.Add(1)
			unheard.done[id] = true
			n.deadTracks(id) // before the rooms end them (hookonce.go)
			n.nodeGone(id)
			n.purgeLater(id) // after the resume window (failover.go)
			n.reclaimSlotsLater(id)
		}
		for _, id := range n.neverHeard(&unheard) {
			n.log.Warn("node gone: its members are in the room state, its heartbeat never came", "gone", id)
			n.foundGone.Add(1)
			n.deadTracks(id)
			n.nodeGone(id)
			n.purgeLater(id)
			n.reclaimSlotsLater(id)
		}
		if i%5 == 4 {
			n.bus.upgradeReplicas(len(n.reg.list()))
		}
		n.retryRemovals() // removals.go
	}
}

// measureRTT pings one other node over the bus (request/reply through the
// routes), so the figure includes the hops between NATS servers.
func (n *Node) measureRTT() {
	for _, o := range n.reg.list() {
		if o.Self {
			continue
		}
		start := time.Now()
		if _, err := n.bus.nc.Request(nodeSubject(o.ID, "ping"), nil, time.Second); err == nil {
			n.rttMicros.Store(time.Since(start).Microseconds())
		}
		return
	}
}

// Alone reports whether no other node is alive, for a node about to stop
// (a drain would have nowhere to send its clients). A node that began to
// listen to heartbeats less than hbExpiry ago may not have heard the
// others yet: it listens until then (bounded by ctx) before it believes it
// is alone, as the others wait as long before they believe a node gone.
func (n *Node) Alone(ctx context.Context) bool {
	if len(n.OtherNodes()) > 0 {
		return false
	}
	n.reg.mu.Lock()
	since := n.reg.since
	n.reg.mu.Unlock()
	for time.Now().Before(since.Add(hbExpiry)) && ctx.Err() == nil {
		select {
		case <-time.After(100 * time.Millisecond):
		case <-ctx.Done():
		}
		if len(n.OtherNodes()) > 0 {
			return false
		}
	}
	return len(n.OtherNodes()) == 0
}

func (n *Node) subscribeNodes() error {
	if _, err := n.bus.nc.Subscribe(subjHeartbeat, func(m *nats.Msg) {
		var info NodeInfo
		if json.Unmarshal(m.Data, &info) == nil && info.ID != "" && info.ID != n.id && !unheard(info.ID) && !n.deafTo(info.ID) {
			if n.reg.restarted(info) {
				n.earlierRunGone(info.ID) // prior.go
			}
			back := !n.reg.alive(info.ID)
			n.reg.heard(info)
			n.pres.note(info.ID, time.Now())
			if back {
				n.nodeBack(info.ID) // failover.go
			}
		}
	}); err != nil {
		return err
	}
	n.reg.mu.Lock()
	n.reg.since = time.Now()
	n.reg.mu.Unlock()
	if _, err := n.bus.nc.Subscribe(subjBye, func(m *nats.Msg) {
		if id := string(m.Data); id != n.id {
			n.reg.forget(id)
			n.pres.forget(id)
			n.nodeGone(id)
		}
	}); err != nil {
		return err
	}
	if _, err := n.bus.nc.Subscribe(subjLeft, func(m *nats.Msg) {
		// Its participants moved and its recordings were handed over; it
		// says no goodbye (which would end them) but leaves the count of
		// the cluster's nodes, so the nodes left still make a majority.
		if id := string(m.Data); id != n.id {
			n.pres.forget(id)
		}
	}); err != nil {
		return err
	}
	var err error
	n.ping, err = n.bus.nc.Subscribe(nodeSubject(n.id, "ping"), func(m *nats.Msg) { _ = m.Respond(nil) })
	return err
}

// ignoredHeartbeats holds the ids of nodes whose heartbeats are dropped
// on receipt: tests only (export_test.go), for a node that is never heard.
var ignoredHeartbeats sync.Map

func unheard(id string) bool { _, ok := ignoredHeartbeats.Load(id); return ok }

// deafTo reports whether this node drops id's heartbeats (tests only).
func (n *Node) deafTo(id string) bool { _, ok := n.deaf.Load(id); return ok }

// nodeSubject is a subject addressed to one node.
func nodeSubject(node, what string) string { return "starling.node." + node + "." + what }

// unheardNodes are the nodes of members in a followed room's state that
// this node has not heard: since when, and those already declared gone.
type unheardNodes struct {
	since map[string]time.Time
	done  map[string]bool
}

// neverHeard returns the nodes to declare gone that expire cannot see: a
// node killed before this one heard its first heartbeat (just after the
// cluster started) left members in the room state, and no heartbeat ever
// expires for it, so its participants would stay, unpurged and without
// their participant_left, for good. A node is declared gone once its
// members were seen for hbExpiry on a steady bus without a heartbeat (a
// node heartbeats from its start, before it takes joins), and it does
// not answer a ping. The nodes seen are those of the members of the rooms
// followed here, and those with a node key (nodekeys.go).
func (n *Node) neverHeard(u *unheardNodes) []string {
	if !n.busSteady() {
		return nil
	}
	n.rs.mu.Lock()
	watches := make([]*roomWatch, 0, len(n.rs.watches))
	for _, w := range n.rs.watches {
		watches = append(watches, w)
	}
	n.rs.mu.Unlock()
	seen := map[string]time.Duration{} // node -> how long unheard before it is gone
	for _, w := range watches {
		w.vmu.Lock()
		if w.view != nil {
			for _, e := range w.view.members {
				if e.Node != "" && e.Node != n.id {
					seen[e.Node] = hbExpiry
				}
			}
		}
		w.vmu.Unlock()
	}
	// And the nodes known from their keys alone (nodekeys.go): a node
	// killed before anyone heard it, holding rooms no live node follows.
	// Twice as long: every node is in this set from its start, when a
	// loaded machine may be slow to carry its first heartbeats.
	for _, id := range n.knownNodes() {
		if seen[id] == 0 {
			seen[id] = 2 * hbExpiry
		}
	}
	// And the nodes whose key another node deleted once it found them
	// gone (noteVanished): at once, without the wait, unless heard, known
	// gone here already (a goodbye, or declared), or answering a ping.
	for _, id := range n.vanishedNodes() {
		if _, lost := n.lost.Load(id); !lost && !u.done[id] && !n.reg.alive(id) && seen[id] == 0 {
			seen[id] = -1
		}
	}
	now := time.Now()
	var gone []string
	for id, wait := range seen {
		if wait < 0 {
			if n.answersPing(id) {
				continue
			}
			delete(u.since, id)
			u.done[id] = true
			gone = append(gone, id)
			continue
		}
		switch {
		case n.reg.alive(id):
			delete(u.since, id)
			delete(u.done, id) // heard: expire sees it from now on
		case u.done[id]:
		case u.since[id].IsZero():
			u.since[id] = now
		case now.Sub(u.since[id]) > wait && n.answersPing(id):
			u.since[id] = now // alive, its heartbeats not heard here yet: look again later
		case now.Sub(u.since[id]) > wait:
			delete(u.since, id)
			u.done[id] = true
			gone = append(gone, id)
		}
	}
	for id := range u.since {
		if seen[id] == 0 {
			delete(u.since, id)
		}
	}
	return gone
}
