package cluster_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/starling-rtc/starling/config"
	"github.com/starling-rtc/starling/server"
)

// testCA is a certificate authority made for one test.
type testCA struct {
	cert   *x509.Certificate
	key    *ecdsa.PrivateKey
	caFile string
	dir    string
}

func newTestCA(t *testing.T, name string) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	ca := &testCA{cert: cert, key: key, dir: t.TempDir()}
	ca.caFile = writePEM(t, ca.dir, name+"-ca.pem", "CERTIFICATE", der)
	return ca
}

// issue makes a node certificate for loopback (127.0.0.1, ::1, localhost),
// usable as TLS server and client, and returns its cert and key files.
func (ca *testCA) issue(t *testing.T, name string) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}, DNSNames: []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return writePEM(t, ca.dir, name+".pem", "CERTIFICATE", der), writePEM(t, ca.dir, name+"-key.pem", "EC PRIVATE KEY", kder)
}

func writePEM(t *testing.T, dir, name, typ string, der []byte) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// withTLS configures node i of a test cluster with a certificate of ca.
func withTLS(t *testing.T, ca *testCA) func(*config.Config) {
	return func(c *config.Config) {
		c.Cluster.TLSCert, c.Cluster.TLSKey = ca.issue(t, c.Cluster.NodeID)
		c.Cluster.TLSCA = ca.caFile
	}
}

// Three nodes with mutual TLS on their routes form one cluster, and a room
// spans them with media both ways. A node without TLS, and one whose
// certificate another CA signed, cannot join: each fails to start with an
// error naming TLS, and the three never list it.
func TestClusterTLS(t *testing.T) {
	parallelLong(t) // 13-23 s (sched_test.go)
	ca := newTestCA(t, "starling-test")
	ports := freePorts(t, 3)
	srvs := startNodes(t, ports, 3, withTLS(t, ca))
	for _, s := range srvs {
		eventually(t, 20*time.Second, "every TLS node lists 3 nodes", func() bool { return len(nodesOf(t, s)) == 3 })
	}
	a := join(t, srvs[0], "tls", "a")
	b := join(t, srvs[1], "tls", "b")
	c := join(t, srvs[2], "tls", "c")
	rb, rc, ra := countMedia(b), countMedia(c), countMedia(a)
	seeEachOther(t, a, b, c)
	publishMedia(t, a, true)
	publishMedia(t, c, false)
	eventually(t, 30*time.Second, "a's media reaches b and c, c's audio reaches a, across TLS routes", func() bool {
		return rb.count(a.ParticipantID(), "video") >= 30 && rc.count(a.ParticipantID(), "audio") >= 50 &&
			ra.count(c.ParticipantID(), "audio") >= 50
	})

	other := newTestCA(t, "intruder")
	for _, tc := range []struct {
		name string
		tune func(*config.Config)
	}{
		{"no TLS", nil},
		{"another CA", withTLS(t, other)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// A port picked now: the nodes' own ports were taken since.
			cfg := nodeConfig(append(ports[:3:3], freePorts(t, 1)...), 3, tc.tune) // routes to the three TLS nodes
			start := time.Now()
			bad, err := server.New(cfg, testLogger())
			t.Logf("refused after %s: %v", time.Since(start), err)
			if err == nil {
				_ = bad.Shutdown(ctxT(t, 10*time.Second))
				t.Fatal("a node outside the TLS cluster joined it")
			}
			if !strings.Contains(err.Error(), "TLS") {
				t.Errorf("error = %v, want it to name TLS", err)
			}
			for _, s := range srvs {
				if n := len(nodesOf(t, s)); n != 3 {
					t.Errorf("%s lists %d nodes, want the 3 TLS nodes", s.Cluster().ID(), n)
				}
			}
		})
	}
}

// Wrong TLS files stop a node before it touches the bus, saying which file
// is wrong and why.
func TestClusterTLSBadFiles(t *testing.T) {
	parallel(t)
	ca, other := newTestCA(t, "starling-test"), newTestCA(t, "other")
	cert, key := ca.issue(t, "n0")
	otherCert, otherKey := other.issue(t, "n0")
	for _, tc := range []struct {
		name, cert, key, ca, want string
	}{
		{"missing cert", filepath.Join(t.TempDir(), "none.pem"), key, ca.caFile, "none.pem"},
		{"key of another certificate", cert, otherKey, ca.caFile, "private key does not match"},
		{"cert of another CA", otherCert, otherKey, ca.caFile, "not signed by the CA"},
		{"CA file without PEM", cert, key, key, "no PEM certificate"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := nodeConfig(freePorts(t, 2), 0, func(c *config.Config) {
				c.Cluster.TLSCert, c.Cluster.TLSKey, c.Cluster.TLSCA = tc.cert, tc.key, tc.ca
			})
			srv, err := server.New(cfg, testLogger())
			if err == nil {
				_ = srv.Shutdown(ctxT(t, 10*time.Second))
				t.Fatal("a node with bad TLS files started")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error = %v, want it to say %q", err, tc.want)
			}
		})
	}
}

// A node on an external NATS that requires TLS with client certificates
// (--nats-url tls://...) connects with its certificate and serves a room;
// one without a certificate is refused with an error naming TLS.
func TestExternalNATSTLS(t *testing.T) {
	parallel(t)
	ca := newTestCA(t, "starling-test")
	srvCert, srvKey := ca.issue(t, "nats")
	tc, err := natsserver.GenTLSConfig(&natsserver.TLSConfigOpts{CertFile: srvCert, KeyFile: srvKey, CaFile: ca.caFile, Verify: true})
	if err != nil {
		t.Fatal(err)
	}
	ns, err := natsserver.NewServer(&natsserver.Options{
		Host: "127.0.0.1", Port: natsserver.RANDOM_PORT, NoSigs: true, NoLog: true,
		Username: "starling", Password: testSecret, JetStream: true, StoreDir: t.TempDir(),
		TLSConfig: tc, TLSVerify: true, TLSTimeout: 5,
	})
	if err != nil {
		t.Fatal(err)
	}
	ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("the test NATS server did not start")
	}
	t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	url := "tls://starling:" + testSecret + "@" + ns.Addr().String()
	external := func(i int, tune func(*config.Config)) config.Config {
		return nodeConfig([]int{0, 0}, i, func(c *config.Config) {
			c.Cluster.Listen, c.Cluster.Routes, c.Cluster.NATSURL = "", nil, url
			if tune != nil {
				tune(c)
			}
		})
	}

	// It trusts the server (the CA) but has no certificate of its own.
	bare, err := server.New(external(1, func(c *config.Config) { c.Cluster.TLSCA = ca.caFile }), testLogger())
	if err == nil {
		_ = bare.Shutdown(ctxT(t, 10*time.Second))
		t.Fatal("a node without a client certificate joined the TLS NATS")
	}
	if !strings.Contains(err.Error(), "TLS") && !strings.Contains(err.Error(), "tls") {
		t.Errorf("error = %v, want it to name TLS", err)
	}
	t.Logf("refused: %v", err)

	srvs := make([]*server.Server, 2)
	for i := range srvs {
		srv, err := server.New(external(i, withTLS(t, ca)), testLogger().With("test-node", i))
		if err != nil {
			t.Fatalf("node %d with a certificate: %v", i, err)
		}
		srvs[i] = srv
		srv.Serve()
		t.Cleanup(func() { _ = srv.Shutdown(ctxT(t, 15*time.Second)) })
	}
	a := join(t, srvs[0], "ext-tls", "a")
	b := join(t, srvs[1], "ext-tls", "b")
	seeEachOther(t, a, b)
}
