package cluster

import (
	"bufio"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// A node on an external NATS whose address accepts every connection and
// closes it at once (a proxy with nothing behind it) dials it again every
// ReconnectWait; nats.go dropped each such attempt with its socket open
// (busDialer). The test cuts the way to NATS, lets the node try 10 times,
// and after each try counts this process's sockets to that address whose
// other end has closed (CLOSE-WAIT): the try just refused, and no more.
// Before busDialer they grew by one a try (9 after 10), until a garbage
// collection.
func TestBusReconnectClosesFailedAttempts(t *testing.T) {
	if _, err := os.Stat("/proc/net/tcp"); err != nil {
		t.Skip("counts sockets in /proc/net/tcp (Linux)")
	}
	// Beside the package's parallel tests, without a place of the
	// scheduler (sched_test.go is the external test package's): it is one
	// bus and a proxy, and counts only the sockets to its own proxy's port.
	// Serial, it was 2.5-3.5 s of the package's serial phase.
	t.Parallel()
	const secret = "test-bus-dial-secret-0123456789"
	ns, err := server.NewServer(&server.Options{
		Host: "127.0.0.1", Port: server.RANDOM_PORT, NoSigs: true, NoLog: true,
		Username: busUser, Password: secret, JetStream: true, StoreDir: t.TempDir(),
	})
	if err != nil {
		t.Fatal(err)
	}
	ns.Start()
	defer func() { ns.Shutdown(); ns.WaitForShutdown() }()
	if !ns.ReadyForConnections(30 * time.Second) {
		t.Fatal("the test NATS server did not start")
	}
	px := newRefusingProxy(t, ns.Addr().String())
	b, err := openBus(BusOptions{
		NodeID: "n0", Secret: secret, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		NATSURL: fmt.Sprintf("nats://%s:%s@%s", busUser, secret, px.ln.Addr()),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer b.close()

	px.refuse()
	worst := 0
	for i := 0; i < 10; i++ {
		select {
		case <-px.refused:
		case <-time.After(30 * time.Second):
			t.Fatalf("after %d tries, the node stopped dialling NATS for 30 s", i)
		}
		n := closeWaitTo(t, px.ln.Addr().(*net.TCPAddr).Port)
		worst = max(worst, n)
	}
	if worst > 2 {
		t.Fatalf("up to %d sockets to a NATS address that closed them were still open (10 tries), want at most the last try's", worst)
	}
}

// refusingProxy forwards TCP to target until refuse: then it closes the
// connections and closes every new one as soon as it is accepted, telling
// refused each time.
type refusingProxy struct {
	ln      net.Listener
	refused chan struct{}
	mu      sync.Mutex
	closing bool
	conns   []net.Conn
}

func newRefusingProxy(t *testing.T, target string) *refusingProxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &refusingProxy{ln: ln, refused: make(chan struct{}, 100)}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			in, err := ln.Accept()
			if err != nil {
				return
			}
			p.mu.Lock()
			if p.closing {
				p.mu.Unlock()
				_ = in.Close()
				p.refused <- struct{}{}
				continue
			}
			out, err := net.Dial("tcp", target)
			if err != nil {
				p.mu.Unlock()
				_ = in.Close()
				continue
			}
			p.conns = append(p.conns, in, out)
			p.mu.Unlock()
			wg.Add(2)
			go func() { defer wg.Done(); _, _ = io.Copy(out, in); _ = out.Close() }()
			go func() { defer wg.Done(); _, _ = io.Copy(in, out); _ = in.Close() }()
		}
	}()
	t.Cleanup(func() { _ = ln.Close(); p.refuse(); wg.Wait() })
	return p
}

func (p *refusingProxy) refuse() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closing = true
	for _, c := range p.conns {
		_ = c.Close()
	}
	p.conns = nil
}

// closeWaitTo counts the IPv4 TCP sockets on this host connected to
// loopback port whose peer has closed and which are still open here
// (CLOSE-WAIT: state 08 in /proc/net/tcp). The port is the test's own, so
// they are this process's.
func closeWaitTo(t *testing.T, port int) int {
	t.Helper()
	f, err := os.Open("/proc/net/tcp")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	want := fmt.Sprintf(":%04X", port)
	n := 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		// sl local_address rem_address st ...
		if len(fields) < 4 || !strings.HasSuffix(fields[2], want) {
			continue
		}
		if st, err := strconv.ParseUint(fields[3], 16, 8); err == nil && st == 8 {
			n++
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return n
}
