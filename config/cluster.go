package config

import (
	"flag"
	"net"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/starling-rtc/starling/internal/redact"
)

// EnvClusterSecret names the environment variable that sets cluster.secret
// (between the config file and --cluster-secret in precedence). Prefer it to
// the flag: a flag shows in the process list.
const EnvClusterSecret = "STARLING_CLUSTER_SECRET"

// Cluster joins this node to other Starling nodes over NATS (docs/cluster.md).
// Clustering is on when Listen or NATSURL is set; otherwise the node is alone
// and nothing below is used.
type Cluster struct {
	// NodeID names this node on the bus; empty = generated at start.
	NodeID string `yaml:"node_id"`
	// Listen is this node's NATS route address (HOST:PORT) for the
	// embedded NATS server; setting it turns clustering on.
	Listen string `yaml:"listen"`
	// Advertise is the route address (HOST:PORT) the other nodes reach
	// this node at when it is not Listen (NAT, a proxy); NATS gossips it, and
	// a node that lists it in its routes does not open a second route.
	Advertise string `yaml:"advertise"`
	// Routes are the other nodes' route URLs (nats://127.0.0.1:7952).
	Routes []string `yaml:"routes"`
	// Secret authenticates the bus (routes and clients) and keys the media
	// relay; required when clustered.
	Secret string `yaml:"secret"`
	// NATSURL uses an existing NATS cluster (with JetStream) instead of the
	// embedded server: nats://a:4222,nats://b:4222.
	NATSURL string `yaml:"nats_url"`
	// RelayAddr is the UDP address of the media relay between nodes
	// (HOST:PORT, port 0 = any free port). Other nodes send to it, so the
	// host must be reachable from them (not 0.0.0.0).
	RelayAddr string `yaml:"relay_addr"`
	// StoreDir keeps the embedded JetStream's files; empty = a temporary
	// folder removed at exit (room state is rebuilt from the nodes anyway).
	StoreDir string `yaml:"store_dir"`
	// TLSCert and TLSKey are this node's PEM certificate and key for the
	// bus: the embedded server's routes and client port, or a client
	// certificate for an external NATS. TLSCA, when set, is the only CA
	// trusted for peers: routes then need certificates it signed (mutual
	// TLS), and an external NATS's certificate is checked against it.
	TLSCert string `yaml:"tls_cert"`
	TLSKey  string `yaml:"tls_key"`
	TLSCA   string `yaml:"tls_ca"`
	// StoreWait is how long a change to the room state (a join, a leave, a
	// resume token, a recording claim) waits for the state store to answer
	// before it gives up: a new stream leader after a node died takes a few
	// seconds, longer on a slow external NATS. A join then fails with
	// "unavailable"; a leave or a token is recorded once the bus is back.
	StoreWait Duration `yaml:"store_wait"`
}

// DefaultStoreWait is cluster.store_wait's default.
const DefaultStoreWait = 8 * time.Second

// Enabled reports whether the node joins a cluster.
func (c Cluster) Enabled() bool { return c.Listen != "" || c.NATSURL != "" }

func (c *Config) defaultCluster() {
	c.Cluster.RelayAddr = "127.0.0.1:0"
	c.Cluster.StoreWait = Duration(DefaultStoreWait)
}

// clusterFlags defines the cluster flags and returns the function that
// copies a given flag into cfg.
func clusterFlags(fs *flag.FlagSet, def Config) func(cfg *Config, name string) {
	nodeID := fs.String("node-id", def.Cluster.NodeID, "this node's `ID` in the cluster (letters, digits, - and _); empty = generated")
	listen := fs.String("cluster-listen", def.Cluster.Listen, "NATS route `HOST:PORT` of the embedded bus; setting it turns clustering on")
	advertise := fs.String("cluster-advertise", def.Cluster.Advertise, "route `HOST:PORT` the other nodes reach this node at, if not --cluster-listen (NAT, proxy)")
	var routes listFlag
	fs.Var(&routes, "cluster-routes", "other nodes' route `URL`s, comma-separated or repeated: nats://127.0.0.1:7952")
	secret := fs.String("cluster-secret", def.Cluster.Secret, "shared `secret` of the cluster bus and media relay (required when clustered); $"+EnvClusterSecret+" sets it too")
	natsURL := fs.String("nats-url", def.Cluster.NATSURL, "use an existing NATS cluster with JetStream instead of the embedded one: `URL`[,URL...]")
	relay := fs.String("cluster-relay-addr", def.Cluster.RelayAddr, "UDP `HOST:PORT` of the media relay between nodes (reachable by the other nodes; port 0 = free port)")
	store := fs.String("cluster-store-dir", def.Cluster.StoreDir, "`folder` for the embedded JetStream's files; empty = a temporary folder")
	tlsCert := fs.String("cluster-tls-cert", def.Cluster.TLSCert, "PEM certificate `file` of this node for the cluster bus's TLS (routes, or a client certificate for --nats-url)")
	tlsKey := fs.String("cluster-tls-key", def.Cluster.TLSKey, "PEM private key `file` of --cluster-tls-cert")
	storeWait := fs.Duration("cluster-store-wait", def.Cluster.StoreWait.Std(), "how long a change to the room state (join, leave, resume) waits for the cluster's state store before it fails")
	tlsCA := fs.String("cluster-tls-ca", def.Cluster.TLSCA, "PEM CA `file` the bus trusts: peers' route certificates must be signed by it (mutual TLS); checks --nats-url's server too")
	return func(cfg *Config, name string) {
		switch name {
		case "node-id":
			cfg.Cluster.NodeID = *nodeID
		case "cluster-listen":
			cfg.Cluster.Listen = *listen
		case "cluster-advertise":
			cfg.Cluster.Advertise = *advertise
		case "cluster-routes":
			cfg.Cluster.Routes = []string(routes)
		case "cluster-secret":
			cfg.Cluster.Secret = *secret
		case "nats-url":
			cfg.Cluster.NATSURL = *natsURL
		case "cluster-relay-addr":
			cfg.Cluster.RelayAddr = *relay
		case "cluster-store-dir":
			cfg.Cluster.StoreDir = *store
		case "cluster-tls-cert":
			cfg.Cluster.TLSCert = *tlsCert
		case "cluster-tls-key":
			cfg.Cluster.TLSKey = *tlsKey
		case "cluster-tls-ca":
			cfg.Cluster.TLSCA = *tlsCA
		case "cluster-store-wait":
			cfg.Cluster.StoreWait = Duration(*storeWait)
		}
	}
}

// applyEnvCluster applies $STARLING_CLUSTER_SECRET.
func (c *Config) applyEnvCluster(getenv func(string) string) {
	if v := strings.TrimSpace(getenv(EnvClusterSecret)); v != "" {
		c.Cluster.Secret = v
	}
}

var nodeIDRE = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

func (c Config) validateCluster(bad func(format string, args ...any)) {
	cl := c.Cluster
	if cl.NodeID != "" && !nodeIDRE.MatchString(cl.NodeID) {
		bad("cluster.node_id %q: use 1 to 64 letters, digits, - or _", cl.NodeID)
	}
	if !cl.Enabled() {
		if len(cl.Routes) > 0 {
			bad("cluster.routes: set cluster.listen (--cluster-listen) too, routes alone do not turn clustering on")
		}
		if cl.TLSCert != "" || cl.TLSKey != "" || cl.TLSCA != "" {
			bad("cluster.tls_cert/tls_key/tls_ca: set cluster.listen or cluster.nats_url too, TLS alone does not turn clustering on")
		}
		return
	}
	if cl.StoreWait <= 0 {
		bad("cluster.store_wait %s: must be positive", cl.StoreWait)
	}
	if cl.Secret == "" {
		bad("cluster.secret: required when clustered: set --cluster-secret or $%s to the same secret on every node", EnvClusterSecret)
	} else if len(cl.Secret) < 16 {
		bad("cluster.secret: at least 16 characters (it guards the bus and keys the media relay)")
	}
	if cl.Listen != "" && cl.NATSURL != "" {
		bad("cluster.nats_url and cluster.listen: pick one, the embedded bus (listen) or an external NATS (nats_url)")
	}
	if cl.Listen != "" && len(cl.Routes) == 0 {
		bad("cluster.routes: list the other nodes' route URLs (--cluster-routes nats://HOST:PORT,...); a node alone needs no cluster")
	}
	if cl.Listen != "" {
		if _, port, err := net.SplitHostPort(cl.Listen); err != nil {
			bad("cluster.listen %q: want HOST:PORT, e.g. 127.0.0.1:7952", cl.Listen)
		} else if p, err := strconv.Atoi(port); err != nil || p < 0 || p > 65535 {
			bad("cluster.listen %q: port must be a number from 0 to 65535", cl.Listen)
		}
	}
	if cl.Advertise != "" {
		if cl.Listen == "" {
			bad("cluster.advertise: only with the embedded bus (cluster.listen)")
		} else if _, port, err := net.SplitHostPort(cl.Advertise); err != nil || port == "" {
			bad("cluster.advertise %q: want HOST:PORT, e.g. 203.0.113.7:7952", cl.Advertise)
		}
	}
	for _, r := range cl.Routes {
		u, err := url.Parse(r)
		if err != nil || u.Scheme != "nats" || u.Port() == "" {
			bad("cluster.routes %q: want nats://HOST:PORT", r)
		}
	}
	for _, r := range strings.Split(cl.NATSURL, ",") {
		if r = strings.TrimSpace(r); r == "" {
			continue
		}
		if u, err := url.Parse(r); err != nil || (u.Scheme != "nats" && u.Scheme != "tls") || u.Host == "" {
			bad("cluster.nats_url %q: want nats://HOST:PORT[,nats://HOST:PORT...]", redact.URLs(r)) // not its password
		}
	}
	if (cl.TLSCert == "") != (cl.TLSKey == "") {
		bad("cluster.tls_cert and cluster.tls_key: set both (the node's certificate and its private key)")
	}
	if cl.Listen != "" && cl.TLSCA != "" && cl.TLSCert == "" {
		bad("cluster.tls_ca: the embedded bus needs this node's certificate too (cluster.tls_cert, cluster.tls_key) to serve its routes over TLS")
	}
	if _, port, err := net.SplitHostPort(cl.RelayAddr); err != nil {
		bad("cluster.relay_addr %q: want HOST:PORT, e.g. 127.0.0.1:7953", cl.RelayAddr)
	} else if p, err := strconv.Atoi(port); err != nil || p < 0 || p > 65535 {
		bad("cluster.relay_addr %q: port must be a number from 0 to 65535", cl.RelayAddr)
	}
}
