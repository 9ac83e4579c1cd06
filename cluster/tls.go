package cluster

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"
	"time"
)

// TLSFiles are the PEM files that encrypt the bus (docs/cluster.md "TLS").
// Cert and Key are this node's certificate and key: presented on the
// embedded server's routes (both ways) and client port, and to an external
// NATS server that asks for a client certificate. CA, when set, is the only
// authority the node trusts for its peers: every route must then present a
// certificate signed by it (mutual TLS), and an external NATS server's
// certificate is checked against it instead of the system's roots.
type TLSFiles struct {
	Cert, Key, CA string
}

// Enabled reports whether any TLS file is configured.
func (f TLSFiles) Enabled() bool { return f.Cert != "" || f.Key != "" || f.CA != "" }

// tlsTimeout bounds a route's or client's TLS handshake, in seconds: a
// busy node can be slow to answer, and a refused handshake is refused at
// once anyway.
const tlsTimeout = 5.0

// loadTLS reads the files and says which one is wrong and why: a missing
// file, a file that is not PEM, a key that does not match its certificate.
// requireCert is true for the embedded bus, whose routes need a
// certificate to serve; an external NATS can be used with the CA alone.
func loadTLS(f TLSFiles, requireCert bool) (*tls.Config, error) {
	if !f.Enabled() {
		return nil, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	switch {
	case f.Cert != "" && f.Key == "":
		return nil, errors.New("cluster TLS: --cluster-tls-cert needs --cluster-tls-key (the certificate's private key)")
	case f.Cert == "" && f.Key != "":
		return nil, errors.New("cluster TLS: --cluster-tls-key needs --cluster-tls-cert")
	case f.Cert == "" && requireCert:
		return nil, errors.New("cluster TLS: the embedded bus needs this node's certificate (--cluster-tls-cert and --cluster-tls-key) to serve its routes over TLS")
	case f.Cert != "":
		certPEM, err := os.ReadFile(f.Cert)
		if err != nil {
			return nil, fmt.Errorf("cluster TLS certificate: %w", err)
		}
		keyPEM, err := os.ReadFile(f.Key)
		if err != nil {
			return nil, fmt.Errorf("cluster TLS key: %w", err)
		}
		cert, err := tls.X509KeyPair(certPEM, keyPEM)
		if err != nil {
			return nil, fmt.Errorf("cluster TLS: certificate %s and key %s: %v", f.Cert, f.Key, explainKeyPair(err))
		}
		if cert.Leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return nil, fmt.Errorf("cluster TLS certificate %s: %w", f.Cert, err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	if f.CA != "" {
		caPEM, err := os.ReadFile(f.CA)
		if err != nil {
			return nil, fmt.Errorf("cluster TLS CA: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(caPEM) {
			return nil, fmt.Errorf("cluster TLS CA %s: no PEM certificate in it", f.CA)
		}
		// Peers are checked against this CA both ways: as servers when
		// this node dials them, as clients when they dial this node.
		cfg.RootCAs = pool
		cfg.ClientCAs = pool
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
		if len(cfg.Certificates) > 0 {
			if _, err := cfg.Certificates[0].Leaf.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
				return nil, fmt.Errorf("cluster TLS: this node's certificate %s is not signed by the CA %s (%v): its peers would refuse it", f.Cert, f.CA, err)
			}
		}
	}
	return cfg, nil
}

// explainKeyPair turns crypto/tls's pairing errors into a sentence.
func explainKeyPair(err error) string {
	msg := err.Error()
	switch {
	case strings.Contains(msg, "does not match"):
		return "the private key does not match the certificate"
	case strings.Contains(msg, "failed to find any PEM data in certificate"):
		return "no PEM certificate in the certificate file"
	case strings.Contains(msg, "failed to find") && strings.Contains(msg, "key"):
		return "no PEM private key in the key file"
	}
	return msg
}

// ErrTLSRefused is returned when the bus's routes fail their TLS handshake:
// a peer without TLS, or whose certificate this node's CA did not sign (or
// the other way round).
var ErrTLSRefused = errors.New("the cluster bus's TLS handshake with a peer failed: every node needs TLS (--cluster-tls-cert/--cluster-tls-key) with certificates signed by the same --cluster-tls-ca")

// routeTLSCheck tells why routes to the peers cannot come up because of
// TLS, for a node whose state store is not ready: nats-server only logs a
// failed route handshake (and a peer without TLS just closes the route), so
// the node dials each peer's route port itself, reads its INFO and tries
// the handshake. It returns ErrTLSRefused, with each peer's reason, when so
// many peers are incompatible that a majority cannot be reached; nil while
// waiting may still help.
func routeTLSCheck(routes []string, tc *tls.Config) error {
	var problems []string
	for _, r := range routes {
		u, err := url.Parse(strings.TrimSpace(r))
		if err != nil || u.Host == "" {
			continue
		}
		if p := probeRouteTLS(u.Host, tc); p != "" {
			problems = append(problems, p)
		}
	}
	total := 1 + len(routes)
	if len(problems) == 0 || total-len(problems) > total/2 {
		return nil
	}
	return fmt.Errorf("%w: %s", ErrTLSRefused, strings.Join(problems, "; "))
}

// probeRouteTLS returns why the route to host cannot work, or "" if it may
// (including when the peer is down or slow: waiting may help then). A
// nats-server with route TLS expects the handshake at once; one without
// sends its INFO in clear text.
func probeRouteTLS(host string, tc *tls.Config) string {
	conn, err := net.DialTimeout("tcp", host, 2*time.Second)
	if err != nil {
		return ""
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(3 * time.Second))
	if tc == nil {
		// Only to learn whether the peer speaks TLS: nothing is sent
		// through this connection.
		probe := tls.Client(conn, &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS12}) //nolint:gosec // a probe, no data
		if err := probe.Handshake(); err == nil || strings.Contains(err.Error(), "remote error") {
			return host + " requires TLS on its routes and this node has none (set --cluster-tls-cert, --cluster-tls-key, --cluster-tls-ca)"
		}
		return ""
	}
	cfg := tc.Clone()
	cfg.ServerName, _, _ = net.SplitHostPort(host)
	tconn := tls.Client(conn, cfg)
	if err := tconn.Handshake(); err != nil {
		var verr *tls.CertificateVerificationError
		var rerr tls.RecordHeaderError
		switch {
		case errors.As(err, &verr):
			return fmt.Sprintf("%s's certificate is not trusted by this node's --cluster-tls-ca (%v)", host, verr.Err)
		case errors.As(err, &rerr):
			return host + " does not use TLS on its routes, this node does"
		case strings.Contains(err.Error(), "remote error"):
			return fmt.Sprintf("%s refused this node's certificate (%v)", host, err)
		}
		return ""
	}
	// With TLS 1.3 the server checks the client's certificate after the
	// client finished its handshake: a refusal arrives as an alert on the
	// first read. Otherwise the peer's INFO arrives, or nothing.
	_ = conn.SetReadDeadline(time.Now().Add(time.Second))
	if _, err := tconn.Read(make([]byte, 1)); err != nil && strings.Contains(err.Error(), "remote error") {
		return fmt.Sprintf("%s refused this node's certificate (%v)", host, err)
	}
	return ""
}
