package cluster

// The embedded NATS server: started in this process, routed to the peers.

import (
	"crypto/tls"
	"fmt"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// startEmbedded runs nats-server in this process: the node connects
// in-process (its client port is loopback only), routes on o.Listen, the secret on routes and
// clients, JetStream for the room facts.
func startEmbedded(o BusOptions, authErr chan error) (*server.Server, string, error) {
	host, portStr, err := net.SplitHostPort(o.Listen)
	if err != nil {
		return nil, "", fmt.Errorf("cluster listen %q: %w", o.Listen, err)
	}
	port, _ := strconv.Atoi(portStr)
	if port == 0 {
		port = server.RANDOM_PORT
	}
	routes, err := routeURLs(o.Routes, o.Secret)
	if err != nil {
		return nil, "", err
	}
	tc, err := loadTLS(o.TLS, true)
	if err != nil {
		return nil, "", err
	}
	dir, tmp := o.StoreDir, ""
	if dir == "" {
		if tmp, err = os.MkdirTemp("", "starling-js-"); err != nil {
			return nil, "", err
		}
		dir = tmp
	}
	opts := &server.Options{
		// The node connects in-process, but nats-server starts routing only
		// once its client port is open: a loopback one, behind the secret.
		ServerName: o.NodeID, Host: "127.0.0.1", Port: server.RANDOM_PORT, NoSigs: true,
		Username: busUser, Password: o.Secret,
		JetStream: true, StoreDir: dir,
		JetStreamMaxMemory: 256 << 20, JetStreamMaxStore: 1 << 30,
		Cluster: server.ClusterOpts{
			Name: "starling", Host: host, Port: port,
			Username: busUser, Password: o.Secret,
			// Routes only to the configured URLs: a proxy or NAT in
			// between stays in the path (each node lists all the others).
			NoAdvertise: true,
			// What this node gossips as its route address: a peer that
			// routes to it through a proxy or NAT recognises the
			// address as one it has configured and opens no direct
			// route beside it.
			Advertise: o.Advertise,
		},
		Routes: routes,
	}
	if tc != nil {
		// Routes both ways (with a CA: both ends show a certificate it
		// signed), and the loopback client port, which only the node's own
		// in-process connection uses (nats-server skips TLS in-process).
		opts.Cluster.TLSConfig, opts.Cluster.TLSTimeout = tc.Clone(), tlsTimeout
		opts.TLSConfig, opts.TLSTimeout = tc.Clone(), tlsTimeout
		opts.TLSVerify = tc.ClientAuth == tls.RequireAndVerifyClientCert
	}
	ns, err := server.NewServer(opts)
	if err != nil {
		_ = os.RemoveAll(tmp)
		return nil, "", fmt.Errorf("cluster bus: %w", err)
	}
	nl := &natsLogger{log: o.Logger.With("component", "nats"), authErr: authErr, fatal: make(chan struct{})}
	ns.SetLoggerV2(nl, false, false, false)
	ns.Start()
	if !readyOrFatal(ns, nl.fatal, embeddedStartWait) {
		ns.Shutdown()
		_ = os.RemoveAll(tmp)
		return nil, "", fmt.Errorf("cluster bus: the embedded NATS server did not start (is %s free?)", o.Listen)
	}
	return ns, tmp, nil
}

// embeddedStartWait bounds the embedded NATS server's start and the node's
// in-process connection to it: only CPU starvation makes either slow.
const embeddedStartWait = 30 * time.Second

// readyOrFatal waits up to d for ns to accept connections, and gives up at
// once when it reported a fatal error. nats-server's ReadyForConnections
// alone waits out its whole duration when a listener could not bind (a
// port taken meanwhile): a node on a taken port, and each test cluster
// started again on fresh ports, waited 30 s for nothing.
func readyOrFatal(ns *server.Server, fatal <-chan struct{}, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for {
		if ns.ReadyForConnections(100 * time.Millisecond) {
			return true
		}
		select {
		case <-fatal:
			return false
		default:
		}
		if time.Now().After(deadline) {
			return false
		}
	}
}

// routeURLs adds the bus credentials to the peers' route URLs.
func routeURLs(in []string, secret string) ([]*url.URL, error) {
	out := make([]*url.URL, 0, len(in))
	for _, r := range in {
		u, err := url.Parse(strings.TrimSpace(r))
		if err != nil || u.Host == "" {
			return nil, fmt.Errorf("cluster route %q: want nats://HOST:PORT", r)
		}
		u.User = url.UserPassword(busUser, secret)
		out = append(out, u)
	}
	return out, nil
}
