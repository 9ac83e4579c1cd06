package config

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestClusterFlags(t *testing.T) {
	c, err := load([]string{"--node-id", "node-a", "--cluster-listen", "127.0.0.1:7952",
		"--cluster-routes", "nats://127.0.0.1:7962,nats://127.0.0.1:7972", "--cluster-secret", "0123456789abcdef",
		"--cluster-relay-addr", "127.0.0.1:7953", "--cluster-advertise", "10.0.0.1:7952",
		"--cluster-tls-cert", "n.pem", "--cluster-tls-key", "n-key.pem", "--cluster-tls-ca", "ca.pem",
		"--cluster-store-wait", "3s"}, nil, noEnv)
	if err != nil {
		t.Fatal(err)
	}
	want := Cluster{NodeID: "node-a", Listen: "127.0.0.1:7952", Routes: []string{"nats://127.0.0.1:7962", "nats://127.0.0.1:7972"},
		Secret: "0123456789abcdef", RelayAddr: "127.0.0.1:7953", Advertise: "10.0.0.1:7952", TLSCert: "n.pem", TLSKey: "n-key.pem", TLSCA: "ca.pem",
		StoreWait: Duration(3 * time.Second)}
	if !reflect.DeepEqual(c.Cluster, want) || !c.Cluster.Enabled() {
		t.Errorf("cluster = %+v, want %+v", c.Cluster, want)
	}
	if d := Default(); d.Cluster.Enabled() {
		t.Error("a default node must not be clustered")
	} else if d.Cluster.StoreWait.Std() != DefaultStoreWait {
		t.Errorf("default cluster.store_wait %s, want %s", d.Cluster.StoreWait, DefaultStoreWait)
	}
}

func TestClusterSecretFromEnvAndYAML(t *testing.T) {
	env := func(k string) string {
		if k == EnvClusterSecret {
			return "from-the-environment-123"
		}
		return ""
	}
	p := filepath.Join(t.TempDir(), "c.yaml")
	yaml := "cluster:\n  listen: 127.0.0.1:7952\n  routes: [\"nats://127.0.0.1:7962\"]\n  secret: from-the-yaml-file-123\n  nats_url: \"\"\n"
	if err := os.WriteFile(p, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := load([]string{"--config", p}, nil, env)
	if err != nil {
		t.Fatal(err)
	}
	if c.Cluster.Secret != "from-the-environment-123" || c.Cluster.Listen != "127.0.0.1:7952" {
		t.Errorf("cluster = %+v: the environment overrides the file", c.Cluster)
	}
}

func TestClusterErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--cluster-listen", "127.0.0.1:7952"}, "cluster.secret: required when clustered"},
		{[]string{"--cluster-listen", "127.0.0.1:7952", "--cluster-secret", "0123456789abcdef"}, "list the other nodes"},
		{[]string{"--nats-url", "nats://a:4222"}, "cluster.secret: required when clustered"},
		{[]string{"--cluster-listen", "127.0.0.1:7952", "--cluster-secret", "short"}, "at least 16"},
		{[]string{"--cluster-routes", "nats://a:1"}, "routes alone"},
		{[]string{"--cluster-listen", "nope", "--cluster-secret", "0123456789abcdef"}, "cluster.listen"},
		{[]string{"--cluster-listen", ":1", "--cluster-secret", "0123456789abcdef", "--cluster-routes", "http://x"}, "cluster.routes"},
		{[]string{"--node-id", "a.b"}, "cluster.node_id"},
		{[]string{"--cluster-listen", ":1", "--nats-url", "nats://a:1", "--cluster-secret", "0123456789abcdef"}, "pick one"},
		{[]string{"--cluster-tls-cert", "c.pem", "--cluster-tls-key", "k.pem"}, "TLS alone"},
		{[]string{"--nats-url", "nats://a:1", "--cluster-secret", "0123456789abcdef", "--cluster-advertise", "10.0.0.1:7952"}, "only with the embedded bus"},
		{[]string{"--cluster-listen", ":1", "--cluster-routes", "nats://a:1", "--cluster-secret", "0123456789abcdef", "--cluster-advertise", "nope"}, "cluster.advertise"},
		{[]string{"--nats-url", "tls://a:1", "--cluster-secret", "0123456789abcdef", "--cluster-tls-cert", "c.pem"}, "set both"},
		{[]string{"--cluster-listen", ":1", "--cluster-routes", "nats://a:1", "--cluster-secret", "0123456789abcdef", "--cluster-tls-ca", "ca.pem"}, "needs this node's certificate"},
		{[]string{"--nats-url", "nats://a:1", "--cluster-secret", "0123456789abcdef", "--cluster-store-wait", "0s"}, "cluster.store_wait 0s: must be positive"},
	} {
		_, err := load(tc.args, nil, noEnv)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: err = %v, want %q", tc.args, err, tc.want)
		}
	}
}

// An invalid --nats-url is named in the error without its password: the
// URL carries the credentials of the external NATS.
func TestClusterErrorHidesNATSPassword(t *testing.T) {
	_, err := load([]string{"--nats-url", "nats://starling:hunter2-secret@[bad", "--cluster-secret", "0123456789abcdef"}, nil, noEnv)
	if err == nil || !strings.Contains(err.Error(), "cluster.nats_url") {
		t.Fatalf("err = %v, want a cluster.nats_url error", err)
	}
	if strings.Contains(err.Error(), "hunter2") {
		t.Errorf("the error shows the NATS password: %v", err)
	}
}
