package cluster_test

import (
	"bytes"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/starling-rtc/starling/config"
	"github.com/starling-rtc/starling/server"
)

// lockedBuffer is a log destination safe for the node's goroutines.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// A node on an external NATS (--nats-url with the credentials in the URL,
// as docs/cluster.md says) does not write the password to its log: it
// logged the URL as given at start ("cluster node started ...
// nats=nats://starling:<password>@...").
func TestExternalNATSCredentialsNotLogged(t *testing.T) {
	parallel(t)
	addr := startNATS(t) // user starling, password testSecret
	var logs lockedBuffer
	cfg := nodeConfig([]int{0}, 0, func(c *config.Config) {
		c.Cluster.Listen, c.Cluster.Routes = "", nil
		c.Cluster.NATSURL = "nats://starling:" + testSecret + "@" + addr
	})
	srv, err := server.New(cfg, slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	if err != nil {
		t.Fatal(err)
	}
	srv.Serve()
	t.Cleanup(func() { _ = srv.Shutdown(ctxT(t, 15*time.Second)) })
	eventually(t, 10*time.Second, "the node lists itself", func() bool { return len(nodesOf(t, srv)) == 1 })
	out := logs.String()
	if !strings.Contains(out, "cluster node started") {
		t.Fatalf("no start line in the log:\n%s", out)
	}
	if strings.Contains(out, testSecret) {
		t.Errorf("the log shows the NATS password:\n%s", out)
	}
	checkNATSConnectErrors(t, addr)
}

// checkNATSConnectErrors: a node that cannot connect to its external NATS
// says which URL (password masked) and what to check. nats.go's own words
// were all it said: "cluster bus: connecting to NATS: nats: no servers
// available for connection" for a server down or a wrong address, and "...:
// nats: Authorization Violation" for wrong credentials, naming neither the
// URL nor the setting (seen from outside with starling --nats-url).
func checkNATSConnectErrors(t *testing.T, addr string) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := l.Addr().String()
	_ = l.Close() // nothing listens there now
	for _, c := range []struct{ url, want, words string }{
		{"nats://starling:wrong-password-17@" + addr, "nats://starling:xxxxx@" + addr, "refused this node's credentials"},
		{"nats://starling:wrong-password-17@" + closed, "nats://starling:xxxxx@" + closed, "no NATS server answers"},
	} {
		cfg := nodeConfig([]int{0}, 0, func(cf *config.Config) {
			cf.Cluster.Listen, cf.Cluster.Routes = "", nil
			cf.Cluster.NATSURL = c.url
		})
		srv, err := server.New(cfg, slog.New(slog.DiscardHandler))
		if err == nil {
			_ = srv.Shutdown(ctxT(t, 15*time.Second))
			t.Fatalf("a node on %s started", c.want)
		}
		msg := err.Error()
		if !strings.Contains(msg, c.want) || !strings.Contains(msg, c.words) || strings.Contains(msg, "wrong-password-17") {
			t.Errorf("connecting to %s: %q, want the URL as %s (password masked) and %q", c.url, msg, c.want, c.words)
		}
	}
}
