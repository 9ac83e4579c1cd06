package cluster_test

import (
	"bytes"
	"log/slog"
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
}
