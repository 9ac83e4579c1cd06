package cluster_test

import (
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/starling-rtc/starling/client"
	"github.com/starling-rtc/starling/config"
	"github.com/starling-rtc/starling/server"
)

// cutProxy forwards TCP to a target until cut: then it drops every
// connection and refuses new ones (closes them at once) until restored.
type cutProxy struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	cut    bool
	conns  []net.Conn
}

func newCutProxy(t testing.TB, target string) *cutProxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &cutProxy{ln: ln, target: target}
	t.Cleanup(func() { _ = ln.Close(); p.setCut(true) })
	go p.serve()
	return p
}

func (p *cutProxy) port() int { return p.ln.Addr().(*net.TCPAddr).Port }

func (p *cutProxy) serve() {
	for {
		in, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		if p.cut {
			p.mu.Unlock()
			_ = in.Close()
			continue
		}
		out, err := net.Dial("tcp", p.target)
		if err != nil {
			p.mu.Unlock()
			_ = in.Close()
			continue
		}
		p.conns = append(p.conns, in, out)
		p.mu.Unlock()
		go func() { _, _ = io.Copy(out, in); _ = out.Close() }()
		go func() { _, _ = io.Copy(in, out); _ = in.Close() }()
	}
}

func (p *cutProxy) setCut(cut bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = cut
	if cut {
		for _, c := range p.conns {
			_ = c.Close()
		}
		p.conns = nil
	}
}

// NATS unreachable from one node, for longer than the heartbeat expiry:
// three nodes share an external NATS server (--nats-url); node 2 reaches
// it through a TCP proxy that is cut, then restored. Its local call goes
// on; when the link is back the cluster converges (node lists, the
// participants and tracks on both sides, media across nodes).
func TestBusCutAndRestored(t *testing.T) { busCut(t, 20*time.Second, false) }

// The same with a cut longer than the resume window: the others purged the
// cut-off node's members from the room state, and it adds them back.
func TestBusCutLongerThanResumeWindow(t *testing.T) { busCut(t, 1500*time.Millisecond, true) }

// startNATS runs a standalone NATS server with JetStream for the test.
func startNATS(t *testing.T) string {
	t.Helper()
	ns, err := natsserver.NewServer(&natsserver.Options{
		Host: "127.0.0.1", Port: natsserver.RANDOM_PORT, NoSigs: true, NoLog: true,
		Username: "starling", Password: testSecret,
		JetStream: true, StoreDir: t.TempDir(),
	})
	if err != nil {
		t.Fatal(err)
	}
	ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("the test NATS server did not start")
	}
	t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	return ns.Addr().String()
}

// busCutSlots bounds how many bus-cut tests run at once (busCutsAtOnce:
// one under the race detector, all of them without). Their clusters share
// nothing (own NATS server, proxy, relay sockets; the same node ids and
// secret, but no address of one reaches the other). Under -race, side by
// side beside two busy loops, 3 rounds of 5 failed (2026-12-07), each after
// heartbeats stopped being heard between nodes that were never cut (n0 and
// n1 of a cluster declared each other gone, in both clusters at once) and
// a client starved past the 10 s negotiation timeout was removed: the
// load, not the cut handling. Without it they passed side by side (4/4
// idle, 6/6 beside two busy loops).
var busCutSlots = make(chan struct{}, busCutsAtOnce)

// busCutTurn makes t parallel and waits for a bus-cut slot, released
// after t's nodes are shut down (its first cleanup, so the last to run),
// then for one of the package's places (sched_test.go): a test waiting
// for its turn holds no place.
func busCutTurn(t *testing.T) {
	t.Parallel()
	busCutSlots <- struct{}{}
	t.Cleanup(func() { <-busCutSlots })
	t.Cleanup(traced(t, sched.acquire(rankOrdinary)))
}

// busCutStoreWait is the cut-off node's (and the others') cluster.store_wait
// in the bus-cut tests: several wait for n2 to give up a change during the
// cut (a leave, a resume token), so 3 s instead of the 8 s default; still
// ample for a store on loopback that is not cut.
const busCutStoreWait = 3 * time.Second

func busCut(t *testing.T, window time.Duration, outlast bool) {
	busCutTurn(t)
	addr := startNATS(t)
	proxy := newCutProxy(t, addr) // node 2's way to the bus
	srvs := make([]*server.Server, 3)
	for i := range srvs {
		cfg := nodeConfig([]int{0, 0, 0}, i, func(c *config.Config) {
			c.Room.ResumeWindow = config.Duration(window)
			c.Limits.MaxParticipants = 6 // members hold slots: those written back claim theirs again
			c.Cluster.StoreWait = config.Duration(busCutStoreWait)
			c.Cluster.Listen, c.Cluster.Routes = "", nil
			target := addr
			if i == 2 {
				target = fmt.Sprintf("127.0.0.1:%d", proxy.port())
			}
			c.Cluster.NATSURL = "nats://starling:" + testSecret + "@" + target
		})
		srvs[i] = serveNode(t, cfg, i)
	}
	for _, s := range srvs {
		eventually(t, 10*time.Second, "every node lists 3 nodes", func() bool { return len(nodesOf(t, s)) == 3 })
	}
	alice := join(t, srvs[2], "cut", "alice") // publishes on the node that will be cut off
	dave := join(t, srvs[2], "cut", "dave")   // her local viewer
	bob := join(t, srvs[0], "cut", "bob")     // her viewer on another node
	carol := join(t, srvs[0], "cut", "carol") // publishes on the other side
	rd, rb, ra := countMedia(dave), countMedia(bob), countMedia(alice)
	seeEachOther(t, alice, dave, bob, carol)
	publishMedia(t, alice, false)
	publishMedia(t, carol, false)
	aID, cID := alice.ParticipantID(), carol.ParticipantID()
	eventually(t, 30*time.Second, "alice's audio reaches dave and bob, carol's reaches alice", func() bool {
		return rd.count(aID, "audio") >= 50 && rb.count(aID, "audio") >= 50 && ra.count(cID, "audio") >= 50
	})

	proxy.setCut(true)
	cutAt := time.Now()
	eventually(t, 15*time.Second, "n0 and n2 each see the other gone", func() bool {
		return len(nodesOf(t, srvs[0])) == 2 && len(nodesOf(t, srvs[2])) == 1
	})
	d0 := rd.count(aID, "audio")
	joinWhileCut(t, srvs[2])
	eventually(t, 15*time.Second, "alice's audio still reaches dave on n2 while cut off", func() bool {
		return rd.count(aID, "audio") >= d0+100
	})
	if outlast {
		// Cut long enough for the others to purge n2's members (heartbeat
		// expiry, then the resume window); the purge is what is awaited.
		eventually(t, 20*time.Second, "n0 purges n2's members from the room state", func() bool {
			_, ps, ok := srvs[0].Cluster().RoomParticipants("cut")
			return ok && len(ps) == 2
		})
	}
	t.Logf("cut for %s", time.Since(cutAt).Round(100*time.Millisecond))
	proxy.setCut(false)
	back := time.Now()
	eventually(t, 30*time.Second, "every node lists three nodes again", func() bool {
		for _, s := range srvs {
			if len(nodesOf(t, s)) != 3 {
				return false
			}
		}
		return true
	})
	t.Logf("node lists complete %s after the link came back", time.Since(back).Round(100*time.Millisecond))
	b0, a0 := rb.count(aID, "audio"), ra.count(cID, "audio")
	eventually(t, 30*time.Second, "alice's audio reaches bob and carol's reaches alice again", func() bool {
		return rb.count(aID, "audio") >= b0+50 && ra.count(cID, "audio") >= a0+50
	})
	t.Logf("media across again %s after the link came back", time.Since(back).Round(100*time.Millisecond))
	all := []*client.Client{alice, dave, bob, carol}
	eventually(t, 15*time.Second, "everyone knows everyone again", func() bool {
		for _, c := range all {
			for _, o := range all {
				if c != o && !knows(c, o.ParticipantID()) {
					return false
				}
			}
		}
		return true
	})
	t.Logf("converged %s after the link came back", time.Since(back).Round(100*time.Millisecond))
	// The room state lists all four again (n0's admin view of the room).
	eventually(t, 15*time.Second, "n1, with no participant, lists all four in the room", func() bool {
		_, ps, ok := srvs[1].Cluster().RoomParticipants("cut")
		return ok && len(ps) == 4
	})
	// Each member holds its key and one slot, no more, no less: those
	// written back claimed theirs again.
	eventually(t, 15*time.Second, "four member keys and four slots", func() bool {
		keys, err := srvs[1].Cluster().RoomKeys("cut")
		return err == nil && len(keys["member"]) == 4 && len(keys["slot"]) == 4
	})
}

// joinWhileCut: a join on a node cut off from the bus is answered 503
// (try again) once the store has been waited for (cluster.store_wait), not
// three times that: it was held while the join freed its claims, each
// waiting for the store as long again (26 s with the default 8 s, seen
// from outside with the NATS server down; the Go client gives a node 15 s).
// The bound leaves a store wait of slack and is below the two waits more
// of before.
func joinWhileCut(t *testing.T, srv *server.Server) {
	t.Helper()
	began := time.Now()
	ws := rawJoin(t, srv.SignalingURL(), "cut-join")
	defer ws.Close()
	_, msg, err := ws.ReadMessage()
	took := time.Since(began)
	if err != nil {
		t.Fatalf("a join on the cut-off node: no answer after %s: %v", took, err)
	}
	t.Logf("a join on the cut-off node answered after %s", took.Round(10*time.Millisecond))
	if !strings.Contains(string(msg), `"code":503`) || took > 2*busCutStoreWait+time.Second {
		t.Errorf("a join on the cut-off node answered after %s (store wait %s): %s; want 503 within about one store wait", took, busCutStoreWait, msg)
	}
}
