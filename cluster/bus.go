// Package cluster joins Starling nodes into one server over NATS: an
// embedded nats-server per node routed to its peers (or an external NATS
// cluster), node heartbeats, room events on per-room subjects, cluster-wide
// room facts in JetStream key-value with compare-and-set, and the requests
// that set up the media relay between nodes (package cluster/relay). A
// single node never loads this package's bus: room.Manager runs without it.
package cluster

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/starling-rtc/starling/internal/redact"
)

// busUser is the NATS user of every node; the cluster secret is its password.
const busUser = "starling"

// roomsBucket is the JetStream key-value bucket of cluster-wide room facts.
const roomsBucket = "starling-rooms"

// ErrSecretRejected is returned when a peer refuses this node's secret.
var ErrSecretRejected = errors.New("a peer refused this node's cluster secret (NATS authorization violation): every node needs the same --cluster-secret / STARLING_CLUSTER_SECRET")

// ErrDuplicateNodeID is returned when another node of the embedded bus has
// this node's id: NATS refuses a route between servers of one name, and
// such nodes waited 30 s and stopped with "no leader: start the other
// nodes", after warning of a wrong secret.
var ErrDuplicateNodeID = errors.New("another node on the bus has this node's --node-id: every node needs its own (or none: one is generated)")

// BusOptions locate the bus.
type BusOptions struct {
	NodeID string
	Listen string   // embedded: route HOST:PORT
	Routes []string // embedded: peers' route URLs
	// Advertise is the route address the peers reach this node at, if not
	// Listen (NAT, a proxy): NATS gossips it to the other nodes.
	Advertise string
	Secret    string
	NATSURL   string   // external NATS instead of the embedded server
	StoreDir  string   // embedded JetStream files; "" = a temporary folder
	TLS       TLSFiles // TLS of the routes and client port, or to the external NATS (tls.go)
	Logger    *slog.Logger
	// Ready bounds how long openBus waits for the peers to accept this node
	// and for the state store (JetStream) to answer.
	Ready time.Duration
}

// bus is the node's connection to NATS (and the embedded server, if any).
type bus struct {
	ns *server.Server // nil with an external NATS
	nc *nats.Conn
	js jetstream.JetStream
	kv jetstream.KeyValue
	// The bucket's stream, once looked up (stream).
	smu      sync.Mutex
	kvStream jetstream.Stream
	// markerTTL: the bucket lets deletion markers expire (keys.go).
	markerTTL bool
	// replicas the bucket was asked with (made again with them), and when
	// the bucket's stream was made (another time: it was lost and made
	// again; bucketlost.go). made is guarded by smu.
	replicas int
	made     time.Time
	// opened is when the bucket was opened: a bucket whose stream was
	// made before it is the one opened, when made is not known.
	opened time.Time
	tmpDir string
	log    *slog.Logger
}

// openBus starts the embedded NATS server (or dials the external one),
// connects, and opens the room-state bucket. A peer refusing the secret is
// ErrSecretRejected; a bucket that does not answer within o.Ready is an
// error naming what is missing.
func openBus(o BusOptions) (*bus, error) {
	b := &bus{log: o.Logger}
	authErr := make(chan error, 1)
	var urls string
	var copts []nats.Option
	replicas := 1
	if o.NATSURL == "" {
		ns, dir, err := startEmbedded(o, authErr)
		if err != nil {
			return nil, err
		}
		b.ns, b.tmpDir = ns, dir
		// nats:// even when the client port has TLS (ClientURL says tls://):
		// the in-process connection needs none.
		urls = strings.Replace(ns.ClientURL(), "tls://", "nats://", 1)
		copts = append(copts, nats.InProcessServer(ns), nats.UserInfo(busUser, o.Secret))
		replicas = min(3, 1+len(o.Routes))
	} else {
		urls = o.NATSURL
		tc, err := loadTLS(o.TLS, false)
		if err != nil {
			return nil, err
		}
		if tc != nil {
			tc.ClientAuth, tc.ClientCAs = tls.NoClientCert, nil // a client: only RootCAs and its certificate count
			copts = append(copts, nats.Secure(tc))
		}
	}
	// The connect timeout (nats.go's default 2 s) also bounds the TLS
	// handshake with an external NATS: as long as the routes' (tlsTimeout),
	// since a busy node is slow to answer (CI under -race: "tls error: i/o
	// timeout" after 2 s). The in-process connection crosses no network,
	// only waits for the embedded server's goroutines: more than 5 s on a
	// starved machine ("read pipe: i/o timeout", -race beside busy loops).
	connectWait := time.Duration(tlsTimeout * float64(time.Second))
	if o.NATSURL == "" {
		connectWait = embeddedStartWait
	}
	// busDialer (busdial.go): nats.go leaves each failed reconnect's
	// socket open otherwise.
	copts = append(copts, nats.Name("starling-"+o.NodeID), nats.MaxReconnects(-1), nats.ReconnectWait(250*time.Millisecond),
		nats.Timeout(connectWait), nats.SetCustomDialer(newBusDialer(connectWait)))
	nc, err := nats.Connect(urls, copts...)
	if err != nil {
		b.close()
		return nil, connectError(o.NATSURL, err)
	}
	b.nc = nc
	b.js, err = jetstream.New(nc)
	if err != nil {
		b.close()
		return nil, fmt.Errorf("cluster bus: JetStream: %w", err)
	}
	var diagnose func() error
	if o.NATSURL == "" {
		tc, _ := loadTLS(o.TLS, true) // loaded without error by startEmbedded
		diagnose = func() error { return routeTLSCheck(o.Routes, tc) }
	}
	b.replicas = replicas
	if err := b.openBucket(o.Ready, replicas, authErr, diagnose); err != nil {
		b.close()
		return nil, err
	}
	return b, nil
}

// node it routes to before it settles for fewer replicas.
const replicaGrace = 2 * time.Second

// openBucket opens (or creates) the room-state bucket, retrying while
// JetStream elects its leader, and fails early if a peer refuses the secret
// or diagnose (if not nil) finds the routes cannot come up.
func (b *bus) openBucket(wait time.Duration, replicas int, authErr chan error, diagnose func() error) error {
	if wait <= 0 {
		wait = 30 * time.Second
	}
	began := time.Now()
	deadline := began.Add(wait)
	nextDiagnosis := time.Now().Add(2 * time.Second) // a healthy cluster is usually ready by then
	// How long one lookup or creation of the bucket waits for its answer:
	// 250 ms first, doubled after each that went unanswered, up to 2 s.
	// The store answers in 1-100 ms, but a request sent while the
	// cluster's nodes create the bucket at once sometimes gets no answer
	// at all: with 2 s from the first, a third to half of the test
	// clusters' starts took 2.5 s instead of 0.5 s (one node's lookup
	// waited out its 2 s). A loaded machine's slow answers still get 2 s
	// after three tries.
	ask := 250 * time.Millisecond
	var last error
	for {
		if diagnose != nil && time.Now().After(nextDiagnosis) {
			if err := diagnose(); err != nil {
				return err
			}
			nextDiagnosis = time.Now().Add(3 * time.Second)
		}
		select {
		case err := <-authErr:
			return err
		default:
		}
		if b.ns != nil && !b.ns.JetStreamIsCurrent() {
			// No JetStream meta leader known yet (the nodes are still
			// routing or electing): an API request now goes unanswered and
			// would hold this loop for its whole 2 s timeout, so every node
			// started ~2 s after its cluster was ready. Wait for the
			// election instead.
			if time.Now().After(deadline) {
				return fmt.Errorf("cluster bus: the room state store (JetStream) has no leader after %s: "+
					"start the other nodes listed in --cluster-routes (a majority must be up)", wait)
			}
			select {
			case err := <-authErr:
				return err
			case <-time.After(20 * time.Millisecond):
			}
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), ask)
		kv, err := b.js.KeyValue(ctx, roomsBucket)
		if errors.Is(err, jetstream.ErrBucketNotFound) {
			// As many replicas as nodes are up now, up to 3 (the
			// heartbeat raises it as more nodes join: upgradeReplicas).
			// Fewer only after a grace period: the meta leader is elected
			// as soon as a majority routes, and a peer still joining is
			// not yet counted for placement; a bucket made smaller in that
			// moment could lose its quorum with one node before the
			// heartbeat raised it.
			fewer := time.Since(began) > replicaGrace
			ttl := markerTTL
			for r := replicas; r >= 1; r-- {
				kv, err = b.js.CreateKeyValue(ctx, jetstream.KeyValueConfig{
					Bucket: roomsBucket, Storage: jetstream.MemoryStorage, Replicas: r, History: 1,
					LimitMarkerTTL: ttl,
					Description:    "Starling rooms: sid, members, identities, slots (cluster-wide facts, compare-and-set)",
				})
				if errors.Is(err, jetstream.ErrLimitMarkerTTLNotSupported) { // an external NATS before 2.11
					ttl, r = 0, r+1
					continue
				}
				var apiErr *jetstream.APIError // 10005: no peers for placement, 10023: insufficient resources
				if !fewer || !errors.As(err, &apiErr) || (apiErr.ErrorCode != 10005 && apiErr.ErrorCode != 10023) {
					if err == nil && r < replicas {
						// Until the heartbeat raises them (upgradeReplicas), the
						// loss of one node may cost the store its quorum.
						b.log.Warn("room state store made with fewer replicas than asked", "replicas", r, "asked", replicas)
					}
					break
				}
			}
			if errors.Is(err, jetstream.ErrBucketExists) {
				kv, err = b.js.KeyValue(ctx, roomsBucket)
			}
		}
		cancel()
		if errors.Is(err, context.DeadlineExceeded) {
			ask = min(2*ask, 2*time.Second)
		}
		if err == nil {
			b.kv = kv
			b.opened = time.Now()
			// The bucket's status holds its stream's info: when it was
			// made comes with it (bucketlost.go). A second request for the
			// stream, within the same 2 s, timed out on a starved machine
			// and left it unknown: the first check then took the bucket for
			// one made again and wrote the node's rooms back (TestJoinStorm
			// under -race, load 40, 30 s into the storm).
			sctx, scancel := context.WithTimeout(context.Background(), 2*time.Second)
			if st, err := kv.Status(sctx); err == nil {
				if ks, ok := st.(*jetstream.KeyValueBucketStatus); ok {
					b.markerTTL = ks.LimitMarkerTTL() > 0
					if si := ks.StreamInfo(); si != nil {
						b.made = si.Created
					}
				}
			}
			scancel()
			b.waitReplicas(deadline)
			return nil
		}
		last = err
		if time.Now().After(deadline) {
			return fmt.Errorf("cluster bus: the room state store (JetStream bucket %s, %d replicas) is not available after %s: %v; "+
				"with the embedded bus, start the other nodes listed in --cluster-routes (a majority must be up)", roomsBucket, replicas, wait, last)
		}
		select {
		case err := <-authErr:
			return err
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// waitReplicas waits (until deadline) for every replica of the room-state
// stream to be current with its leader. A bucket just made has a leader
// before its followers have caught up, and a leader lost in that moment
// (a node stopped or killed within a second of the cluster's start, as
// tests do: TestShutdownHandsParticipantsOver, TestResumeBeforeNodeKnownDead
// on a loaded machine) left the two others without a new leader for 20-30
// s, every change and resume answered 503 meanwhile. Only the embedded bus:
// an external NATS's operator places the bucket. A replica on a node that
// is down does not count; one that never gets current is waited for until
// the deadline, then the node goes on as before.
func (b *bus) waitReplicas(deadline time.Time) {
	if b.ns == nil {
		return
	}
	start := time.Now()
	for waited := false; ; waited = true {
		// A bucket made with fewer replicas than nodes (peers that joined
		// the meta group late, on a loaded machine) gets them now rather
		// than at the heartbeat's next upgrade: a leader lost before that
		// left the bucket without a quorum (TestResumeBeforeNodeKnownDead
		// under -race: upgraded to 3 replicas a second before the kill).
		b.upgradeReplicas(1 + b.routedPeers())
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		current, why := b.replicasCurrent(ctx)
		cancel()
		if current {
			if waited {
				b.log.Debug("room state store: every replica current", "waited", time.Since(start))
			}
			return
		}
		if time.Now().After(deadline) {
			b.log.Warn("room state store: not every replica is current; going on", "why", why)
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// alone reports whether this node's embedded NATS server, configured
// with routes to others (a replicated store), has a route to none of them
// now: no store write can reach a majority. An external bus is never
// alone (its servers are not ours to count).
func (b *bus) alone() bool {
	return b.ns != nil && b.replicas > 1 && b.routedPeers() == 0
}

// routedPeers counts the other NATS servers this one has a route to now.
func (b *bus) routedPeers() int {
	rz, err := b.ns.Routez(&server.RoutezOptions{})
	if err != nil {
		return 0
	}
	peers := map[string]bool{}
	for _, r := range rz.Routes {
		if r.RemoteName != "" {
			peers[r.RemoteName] = true
		}
	}
	return len(peers)
}

// replicasCurrent reports whether the room-state stream has a leader and
// every replica it is configured with, each current; why says what is
// missing.
func (b *bus) replicasCurrent(ctx context.Context) (bool, string) {
	s, err := b.js.Stream(ctx, "KV_"+roomsBucket)
	if err != nil {
		return false, err.Error()
	}
	info, err := s.Info(ctx)
	switch {
	case err != nil:
		return false, err.Error()
	case info.Cluster == nil:
		return true, "" // not clustered
	case info.Cluster.Leader == "":
		return false, "no leader"
	case len(info.Cluster.Replicas) < info.Config.Replicas-1:
		return false, fmt.Sprintf("%d of %d followers", len(info.Cluster.Replicas), info.Config.Replicas-1)
	}
	for _, p := range info.Cluster.Replicas {
		// An offline one (a node down for good) does not hold a node's
		// start: the others are what the stream has.
		if !p.Current && !p.Offline {
			return false, "follower " + p.Name + " not current"
		}
	}
	return true, ""
}

// stream is the bucket's stream (for direct reads of its last messages).
func (b *bus) stream(ctx context.Context) (jetstream.Stream, error) {
	b.smu.Lock()
	defer b.smu.Unlock()
	if b.kvStream != nil {
		return b.kvStream, nil
	}
	s, err := b.js.Stream(ctx, "KV_"+roomsBucket)
	if err != nil {
		return nil, err
	}
	b.kvStream = s
	return s, nil
}

func (b *bus) close() {
	if b.nc != nil {
		_ = b.nc.Drain()
		b.nc.Close()
	}
	if b.ns != nil {
		b.ns.Shutdown()
		b.ns.WaitForShutdown()
	}
	if b.tmpDir != "" {
		_ = os.RemoveAll(b.tmpDir)
	}
}

// natsLogger routes the embedded server's log into slog and notices a peer
// refusing our route credentials (the wrong secret).
type natsLogger struct {
	log     *slog.Logger
	authErr chan error
	once    sync.Once
	// fatal is closed at the server's first fatal error (a listener that
	// could not bind, among others): startEmbedded stops waiting then.
	fatal     chan struct{}
	fatalOnce sync.Once
}

func (l *natsLogger) Noticef(format string, v ...any) { l.log.Debug(fmt.Sprintf(format, v...)) }
func (l *natsLogger) Warnf(format string, v ...any) {
	msg := fmt.Sprintf(format, v...)
	if strings.HasPrefix(msg, "Plaintext passwords detected") {
		// The embedded server's password is the cluster secret, given to
		// it in memory, never in a file: its advice (nkeys, bcrypt in the
		// configuration file) does not apply, and every clustered node's
		// start warned of it (seen from outside).
		l.log.Debug(msg)
		return
	}
	l.log.Warn(msg)
}
func (l *natsLogger) Fatalf(format string, v ...any) {
	l.log.Error(fmt.Sprintf(format, v...))
	l.fatalOnce.Do(func() { close(l.fatal) })
}
func (l *natsLogger) Debugf(format string, v ...any) {}
func (l *natsLogger) Tracef(format string, v ...any) {}
func (l *natsLogger) Errorf(format string, v ...any) {
	msg := fmt.Sprintf(format, v...)
	switch {
	case strings.Contains(msg, "Route Error") && strings.Contains(msg, "Authorization Violation"):
		l.log.Error("a peer refused this node's cluster secret", "nats", msg)
		l.once.Do(func() { l.authErr <- ErrSecretRejected })
	case strings.Contains(msg, "Remote server has a duplicate name"):
		l.log.Error("another node has this node's id", "nats", msg)
		l.once.Do(func() { l.authErr <- ErrDuplicateNodeID })
	case strings.Contains(msg, "authentication error"):
		l.log.Warn("refused a connection with a wrong cluster secret", "nats", msg)
	default:
		l.log.Debug(msg)
	}
}

// upgradeReplicas raises the room-state bucket's replicas to min(3, live
// nodes) after nodes that were missing at its creation have joined, so it
// survives the loss of a node. Only the embedded bus manages its bucket.
func (b *bus) upgradeReplicas(live int) {
	if b.ns == nil || live < 2 {
		return
	}
	want := min(3, live)
	ctx, cancel := context.WithTimeout(context.Background(), kvTimeout)
	defer cancel()
	s, err := b.js.Stream(ctx, "KV_"+roomsBucket)
	if err != nil {
		return
	}
	info, err := s.Info(ctx)
	if err != nil || info.Config.Replicas >= want {
		return
	}
	cfg := info.Config
	cfg.Replicas = want
	if _, err := b.js.UpdateStream(ctx, cfg); err != nil {
		b.log.Debug("room state replicas unchanged", "want", want, "err", err)
		return
	}
	b.log.Info("room state now replicated on more nodes", "replicas", want)
}

// connectError says what failed when the node could not connect to its
// bus, naming an external NATS by its URL (credentials masked): nats.go
// says only "no servers available for connection" or "Authorization
// Violation", which does not tell an operator which URL or setting is
// wrong.
func connectError(natsURL string, err error) error {
	msg := strings.ToLower(err.Error())
	if strings.Contains(msg, "tls") || strings.Contains(msg, "secure") {
		return fmt.Errorf("cluster bus: connecting to NATS %sover TLS: %w (the server's certificate must be signed by --cluster-tls-ca, "+
			"or trusted by the system; a server that asks for a client certificate needs --cluster-tls-cert and --cluster-tls-key)", at(natsURL), err)
	}
	if natsURL == "" {
		return fmt.Errorf("cluster bus: connecting to NATS: %w", err)
	}
	where := redact.URLs(natsURL)
	switch {
	case errors.Is(err, nats.ErrAuthorization) || strings.Contains(msg, "authorization violation") || strings.Contains(msg, "authentication"):
		return fmt.Errorf("cluster bus: the NATS server at %s refused this node's credentials (the user and password, or token, "+
			"in --nats-url / cluster.nats_url): %w", where, err)
	case errors.Is(err, nats.ErrNoServers):
		return fmt.Errorf("cluster bus: no NATS server answers at %s (--nats-url / cluster.nats_url): is it running and reachable "+
			"from this node? %w", where, err)
	}
	return fmt.Errorf("cluster bus: connecting to NATS at %s: %w", where, err)
}

// at is "at URL " for an external NATS's URL (masked), "" for the embedded bus.
func at(natsURL string) string {
	if natsURL == "" {
		return ""
	}
	return "at " + redact.URLs(natsURL) + " "
}
