package cluster

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/starling-rtc/starling/internal/redact"
	"github.com/starling-rtc/starling/room"
)

// Options start a Node.
type Options struct {
	BusOptions
	// URL is the node's HTTP base URL, shown in GET /v1/nodes.
	URL string
	// RelayAddr is the UDP address of the media relay.
	RelayAddr string
	// Rooms is the node's room manager; the Node becomes its room.Bus.
	Rooms *room.Manager
	// EmptyTimeout is how long a room empty everywhere lives on.
	EmptyTimeout time.Duration
	// StoreWait bounds how long a change to the room state waits for the
	// store to answer (a new stream leader, a lost bus link); 0 means
	// DefaultStoreWait. Tests of a node cut off from the bus shorten it,
	// since they wait for this node to give up.
	StoreWait time.Duration
	// OnRoomStarted is called on the one node whose join opened a room
	// for the whole cluster.
	OnRoomStarted func(room, sid string)
	// OnRoomFinished is called on the one node that closes a room for the
	// whole cluster (webhooks send room_finished from there).
	OnRoomFinished func(room, sid string)
	// OnMemberGone is called on the one node that removes from the room
	// state a member whose own node is dead, so never sent its
	// participant_left webhook: purged after the resume window (reason
	// "disconnected"), or replaced by a join of its identity ("duplicate").
	// See deadmembers.go.
	OnMemberGone func(room, sid string, m room.Member, reason string)
	// OnTrackGone is called, on one node of the cluster, for each track of
	// a dead node (known from this node's stubs, or from the track's key
	// in the room state): the dead node never sends their
	// track_unpublished webhook (hookonce.go, trackkeys.go).
	OnTrackGone func(t room.PublishedTrack)
	// LocalView is this node's part of a room as the admin API shows it
	// (a JSON array, admin.LocalParticipants), nil without one; other
	// nodes ask for it to answer GET /v1/rooms/{room} (admin.go).
	LocalView func(room string) json.RawMessage
}

// Node is this process's membership in the cluster.
type Node struct {
	id      string
	opts    Options
	log     *slog.Logger
	bus     *bus
	reg     *registry
	rooms   *room.Manager
	started time.Time

	// bucketCheck asks keepBucket to check the room state bucket is there
	// (a reconnection: bucketlost.go).
	bucketCheck chan struct{}

	rttMicros atomic.Int64
	// silentAlive counts the times a node whose heartbeats stopped arriving
	// answered a ping, and was not found gone (nodes.go, expire).
	silentAlive atomic.Int64
	// foundGone counts the times this node found another gone (no
	// heartbeat, no answer to a ping), tests read it.
	foundGone atomic.Int64
	// deaf holds the ids of nodes whose heartbeats this node drops on
	// receipt: tests only (export_test.go), for a node stalled as seen from here.
	deaf sync.Map
	// hiddenKeys holds the node keys whose deliveries this node's watch
	// of the node keys drops (tests only: export_test.go).
	hiddenKeys sync.Map
	slotHooks  slotHooks // tests only (slots.go)
	// loseMoveWrite: tests only (export_test.go): the next takeover's
	// write of the moved member fails after its delete landed.
	loseMoveWrite atomic.Bool
	// identityChecked: tests only, run after each pass of an identity
	// check with whether the joined participant was local.
	identityChecked atomic.Pointer[func(local bool)]
	// joinReturns: tests only, run before Join returns (the participant
	// is admitted to the local room after).
	joinReturns atomic.Pointer[func()]
	// places: tests only, told of each place this node's joins take (a
	// Join that succeeded) and give up (a Leave), before either reaches
	// the room state's slots (export_test.go, OnPlaces).
	places atomic.Pointer[func(room, id string, held bool)]
	// bucketRewrites counts the times this node found the room state
	// bucket made again and wrote its part back (bucketlost.go).
	bucketRewrites atomic.Int64
	// endMoveAtDelete: tests only, the next takeover ends (503) right
	// after its delete of the member's old key landed.
	endMoveAtDelete atomic.Bool
	movingIn        movingMembers // members other nodes said they move (moving.go)
	// movesHeld counts the removals of absent remote participants held
	// back because another node said it moves them (tests read it).
	movesHeld atomic.Int64
	moves     pendingMoves // takeovers whose delete went out, write not confirmed (takeover.go)
	mixQ      mixQueue     // settings of rooms' mixes waiting for their write (mixbatch.go)
	owned     ownedKeys    // recording and webhook claims to write back (owned.go)
	remadeAt  atomic.Int64 // unix ns when this node found the bucket made again (bucketlost.go)
	busUp     atomic.Int64 // unix ns of the bus connection's last (re)connection, 0 while down

	rs        roomSubs     // see rooms.go
	media     media        // see media.go
	slotReads slotReads    // see members.go
	unremoved removals     // see removals.go
	prior     priorMembers // members of this node's previous run (prior.go)
	// tokenFailures counts resume token hashes SetToken gave up on (the
	// watch records them again once the bus is back; reconcile.go).
	tokenFailures atomic.Int64

	unobserve func()
	ping      *nats.Subscription // answers other nodes' pings: this node is alive
	draining  atomic.Bool
	stop      chan struct{}
	// lastOut ends once the node, closing, is alone on its embedded bus
	// (lastout.go): its store writes end then. endLastOut ends it.
	lastOut    context.Context
	endLastOut context.CancelFunc
	// stopped ends with stop (stopSpawning): requests a closing node no
	// longer needs the answer of end with it.
	stopped    context.Context
	endStopped context.CancelFunc
	wg         sync.WaitGroup
	// spawnMu orders spawn's wg.Add before Close's wg.Wait; closing is
	// set, under it, when Close starts waiting.
	spawnMu    sync.Mutex
	closing    bool
	closeOnce  sync.Once
	hooks      hookQueue  // webhook claims (hookonce.go)
	claimSweep claimSweep // their expiry without per-key TTLs (hooksweep.go)
	tracks     trackStore // this node's track keys (trackkeys.go)

	lost sync.Map // ids of the nodes gone silent: heard again, they resync the watches

	goneMu    sync.Mutex
	goneHooks []func(node string) // recording.go

	pres presence // when each node was last heard (presence.go)

	nkeys nodeKeys // every node's key (nodekeys.go)

	// loseCloseAnswer: tests only (export_test.go), the next delete's
	// landed write reports a timeout, as when its answer is lost.
	loseCloseAnswer atomic.Pointer[func()] // and what happens before the timeout
	// eventHook: tests only (export_test.go), run on each room event
	// received from another node before it is applied.
	eventHook atomic.Pointer[func(room string, ev room.Event)]
	// slotClaimed: tests only, runs in a join once its slot is claimed,
	// before its member is written.
	slotClaimed atomic.Pointer[func()]
	// skipProofs: tests only, how many secret proof requests this node
	// leaves unanswered (a starved node; secretcheck.go).
	skipProofs atomic.Int32
	// loseClaimAnswer: tests only, the next webhook claim's landed write
	// reports a timeout.
	loseClaimAnswer atomic.Bool
	// holdCloses: tests only, closing a part of a deleted room (its
	// command, or the watch) waits until the channel is closed.
	holdCloses atomic.Pointer[chan struct{}]
}

// closeHeld waits while a test holds this node's closes of deleted rooms'
// parts (holdCloses).
func (n *Node) closeHeld() {
	if ch := n.holdCloses.Load(); ch != nil {
		select {
		case <-*ch:
		case <-n.stop:
		}
	}
}

// NewNodeID makes a random node id.
func NewNodeID() string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return "node-" + hex.EncodeToString(b[:])
}

// Start joins the cluster: bus, heartbeats, room events. It fails with
// ErrSecretRejected when a peer refuses the secret.
func Start(o Options) (*Node, error) {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.NodeID == "" {
		o.NodeID = NewNodeID()
	}
	if o.EmptyTimeout <= 0 {
		o.EmptyTimeout = 10 * time.Second
	}
	if o.StoreWait <= 0 {
		o.StoreWait = DefaultStoreWait
	}
	if o.Secret == "" {
		return nil, errors.New("cluster: a secret is required (--cluster-secret or STARLING_CLUSTER_SECRET)")
	}
	n := &Node{
		id: o.NodeID, opts: o, log: o.Logger.With("node", o.NodeID), reg: newRegistry(o.NodeID),
		rooms: o.Rooms, started: time.Now(), stop: make(chan struct{}),
	}
	n.lastOut, n.endLastOut = newLastOut()
	n.stopped, n.endStopped = context.WithCancel(context.Background())
	n.rs.init()
	n.hooks.giveUp = make(chan struct{})
	n.nkeys.restart = make(chan struct{}, 1)
	n.bucketCheck = make(chan struct{}, 1)
	o.Logger = n.log
	b, err := openBus(o.BusOptions)
	if err != nil {
		return nil, err
	}
	n.bus = b
	n.busUp.Store(time.Now().UnixNano())
	b.nc.SetDisconnectErrHandler(func(*nats.Conn, error) { n.busUp.Store(0) })
	b.nc.SetReconnectHandler(func(*nats.Conn) {
		n.busUp.Store(time.Now().UnixNano())
		n.rs.resyncAll() // a watch may have missed changes while the connection was down
		n.restartNodeKeys()
		select {
		case n.bucketCheck <- struct{}{}: // a NATS server that restarted lost the bucket (bucketlost.go)
		default:
		}
	})
	if err := n.startRelay(); err != nil {
		b.close()
		return nil, err
	}
	if err := n.subscribeNodes(); err != nil {
		n.failStart()
		return nil, err
	}
	if err := n.subscribeNodeRequests(); err != nil { // see rooms.go
		n.failStart()
		return nil, err
	}
	if err := n.subscribeHandoff(); err != nil { // see failover.go
		n.failStart()
		return nil, err
	}
	if err := n.subscribeSettled(); err != nil { // see settled.go
		n.failStart()
		return nil, err
	}
	if err := n.subscribeView(); err != nil { // see admin.go
		n.failStart()
		return nil, err
	}
	if err := n.subscribeMix(); err != nil { // see mixprefs.go
		n.failStart()
		return nil, err
	}
	if err := n.subscribeHeard(); err != nil { // see presence.go
		n.failStart()
		return nil, err
	}
	if err := n.answerProofs(); err != nil { // see secretcheck.go
		n.failStart()
		return nil, err
	}
	if err := b.nc.Flush(); err != nil {
		n.failStart()
		return nil, err
	}
	if o.NATSURL != "" { // the embedded routes check the secret themselves
		if err := n.checkSecret(); err != nil {
			n.failStart()
			return nil, err
		}
	}
	n.loadPrior()    // members left behind by an earlier run with this id (prior.go)
	n.writeNodeKey() // before this node takes joins: the others know it exists (nodekeys.go)
	n.spawn(n.watchNodeKeys)
	n.spawn(func() { n.storedTracksGone(n.id) }) // and their tracks (trackkeys.go)
	n.spawn(func() { n.runHeartbeats(n.stop) })
	n.spawn(func() { n.runMaintenance(n.stop) })
	n.spawn(n.runClaimSweep) // hooksweep.go
	n.spawn(n.keepBucket)    // bucketlost.go
	if n.rooms != nil {
		n.rooms.SetBus(n)
		n.unobserve = n.rooms.AddObserver(n) // local tracks unpublished end their exports
	}
	n.log.Info("cluster node started", "listen", o.Listen, "routes", o.Routes, "nats", redact.URLs(o.NATSURL)) // its credentials are in the URL
	return n, nil
}

// ID is the node id.
func (n *Node) ID() string { return n.id }

// Conn is the node's NATS connection (tests use it to watch the bus).
func (n *Node) Conn() *nats.Conn { return n.bus.nc }

// Nodes lists the live nodes of the cluster, this one included.
func (n *Node) Nodes() []NodeInfo { return n.reg.list() }

// BusRTT is the last measured round trip to another node over the bus.
func (n *Node) BusRTT() time.Duration { return time.Duration(n.rttMicros.Load()) * time.Microsecond }

func (n *Node) selfInfo() NodeInfo {
	out, in, _, _ := n.relayFigures()
	info := NodeInfo{ID: n.id, URL: n.opts.URL, RelayAddr: n.relayAddr(), RelayedOut: out, RelayedIn: in, StartedAt: n.started.UnixMilli(), BusRTTMicros: n.rttMicros.Load()}
	if n.rooms != nil {
		s := n.rooms.Snapshot()
		info.Rooms, info.Participants, info.Tracks = s.Rooms, s.Participants, s.Tracks
	}
	return info
}

// Close says goodbye on the bus and leaves it. Call it after the rooms
// have shut down, so their leaving is published first.
func (n *Node) Close() {
	n.closeOnce.Do(func() {
		defer n.endLastOut()
		n.watchLastOut()
		n.flushHooks() // the rooms' last leaves are claimed while the bus is up
		n.stopSpawning()
		n.wg.Wait()
		n.rs.closeAll()
		if n.unobserve != nil {
			n.unobserve()
		}
		n.deleteNodeKey()       // nodekeys.go
		if !n.draining.Load() { // a drained node's participants move: no goodbye that ends them
			_ = n.bus.nc.Publish(subjBye, []byte(n.id))
		} else {
			_ = n.bus.nc.Publish(subjLeft, []byte(n.id)) // but it leaves the count of nodes (presence.go)
		}
		_ = n.bus.nc.Flush()
		n.closeBus()
	})
}

// spawn runs f in a goroutine Close waits for, unless Close has started
// waiting (false then). Every goroutine of n.wg starts here: most start
// from a bus handler, a room's callback or a timer, none of which Close
// stops before it waits, and a wg.Add from zero while Wait ran is what the
// race detector reports (and that work then ran on a closed bus). A caller
// that holds something the goroutine would release releases it itself
// when spawn refuses.
func (n *Node) spawn(f func()) bool {
	n.spawnMu.Lock()
	defer n.spawnMu.Unlock()
	if n.closing {
		return false
	}
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		f()
	}()
	return true
}

// failStart undoes a start that failed part way: the command worker
// (rooms.go), if started, then the relay and the bus.
func (n *Node) failStart() {
	n.stopSpawning()
	n.wg.Wait()
	n.closeBus()
}

// stopSpawning makes spawn refuse from now on, then closes n.stop: every
// goroutine spawn started before it is counted in n.wg, and none after.
func (n *Node) stopSpawning() {
	n.spawnMu.Lock()
	n.closing = true
	n.spawnMu.Unlock()
	close(n.stop)
	n.endStopped()
}

// closeBus closes the relay and the bus.
func (n *Node) closeBus() {
	if n.media.t != nil {
		_ = n.media.t.Close()
	}
	n.bus.close()
}

// nodeGone is called when a node said goodbye or stopped heartbeating:
// its participants leave every room here.
func (n *Node) nodeGone(id string) {
	if n.rooms != nil {
		n.rooms.RemoteNodeGone(id)
	}
	n.relayGone(id)
	n.notifyNodeGone(id)
	n.lost.Store(id, time.Now()) // when: a command to its participants says how long they stay (command.go)
	n.rs.resyncAll()             // a watch whose consumer lived on that node is stalled
	n.restartNodeKeys()
}

func (n *Node) roomFinished(name, sid string) {
	n.dropMixPrefs(name, sid) // mixprefs.go
	if n.opts.OnRoomFinished != nil {
		n.afterHooks(func() { n.opts.OnRoomFinished(name, sid) }) // hookonce.go
	}
}

// Drain starts a handover before shutdown: the node stops answering pings,
// so the other nodes take its participants over when they resume there
// (after the rooms send them leave "serverShutdown"), and Close will not
// say goodbye, which would end them on the other nodes.
func (n *Node) Drain() {
	if n.draining.Swap(true) {
		return
	}
	if n.ping != nil {
		_ = n.ping.Unsubscribe()
	}
	_ = n.bus.nc.Flush()
	n.log.Info("draining: participants resume through the other nodes")
}
