package cluster_test

import (
	"fmt"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/starling-rtc/starling/client"
	"github.com/starling-rtc/starling/config"
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

// NATS unreachable from one node for longer than the heartbeat expiry: its
// local call goes on; when the bus link is back, the cluster converges
// (node lists, the participants and tracks on both sides, media across).
func TestBusCutAndRestored(t *testing.T) {
	ports := freePorts(t, 3)
	// One proxy per directed route link (i dials j through links[i][j]),
	// so that node 2's links can be cut alone.
	links := map[[2]int]*cutProxy{}
	for i := range ports {
		for j := range ports {
			if i != j {
				links[[2]int{i, j}] = newCutProxy(t, fmt.Sprintf("127.0.0.1:%d", ports[j]))
			}
		}
	}
	srvs := startNodes(t, ports, 3, func(c *config.Config) {
		c.Room.ResumeWindow = config.Duration(20 * time.Second)
		i := int(c.Cluster.NodeID[1] - '0')
		c.Cluster.Routes = nil
		for j := range ports {
			if j != i {
				c.Cluster.Routes = append(c.Cluster.Routes, fmt.Sprintf("nats://127.0.0.1:%d", links[[2]int{i, j}].port()))
			}
		}
	})
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

	setN2 := func(cut bool) {
		for k, p := range links {
			if k[0] == 2 || k[1] == 2 {
				p.setCut(cut)
			}
		}
	}
	setN2(true)
	cutAt := time.Now()
	eventually(t, 15*time.Second, "n0 and n2 each see the other gone", func() bool {
		return len(nodesOf(t, srvs[0])) == 2 && len(nodesOf(t, srvs[2])) == 1
	})
	d0 := rd.count(aID, "audio")
	eventually(t, 15*time.Second, "alice's audio still reaches dave on n2 while cut off", func() bool {
		return rd.count(aID, "audio") >= d0+100
	})
	t.Logf("cut for %s", time.Since(cutAt).Round(100*time.Millisecond))
	setN2(false)
	back := time.Now()
	eventually(t, 30*time.Second, "every node lists three nodes again", func() bool {
		for _, s := range srvs {
			if len(nodesOf(t, s)) != 3 {
				return false
			}
		}
		return true
	})
	b0, a0 := rb.count(aID, "audio"), ra.count(cID, "audio")
	eventually(t, 30*time.Second, "alice's audio reaches bob and carol's reaches alice again", func() bool {
		return rb.count(aID, "audio") >= b0+50 && ra.count(cID, "audio") >= a0+50
	})
	t.Logf("converged %s after the link came back", time.Since(back).Round(100*time.Millisecond))
	for _, c := range []*client.Client{alice, dave, bob, carol} {
		for _, o := range []*client.Client{alice, dave, bob, carol} {
			if c != o && !knows(c, o.ParticipantID()) {
				t.Errorf("%s does not know %s after the cut", c.LastJoin().Participant.Name, o.LastJoin().Participant.Name)
			}
		}
	}
}
