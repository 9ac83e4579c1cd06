package cluster_test

import (
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/starling-rtc/starling/client"
	"github.com/starling-rtc/starling/config"
)

// delayProxy forwards TCP connections to target, delaying every byte by
// delay in each direction (order kept), like a slow link between nodes.
type delayProxy struct {
	ln     net.Listener
	target string
	delay  time.Duration
	wg     sync.WaitGroup
	mu     sync.Mutex
	conns  []net.Conn
}

func newDelayProxy(t testing.TB, target string, delay time.Duration) *delayProxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &delayProxy{ln: ln, target: target, delay: delay}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.close)
	return p
}

func (p *delayProxy) port() int { return p.ln.Addr().(*net.TCPAddr).Port }

func (p *delayProxy) accept() {
	defer p.wg.Done()
	for {
		in, err := p.ln.Accept()
		if err != nil {
			return
		}
		out, err := net.Dial("tcp", p.target)
		if err != nil {
			in.Close()
			continue
		}
		p.mu.Lock()
		p.conns = append(p.conns, in, out)
		p.mu.Unlock()
		p.wg.Add(2)
		go func() { defer p.wg.Done(); p.pipe(out, in) }()
		go func() { defer p.wg.Done(); p.pipe(in, out) }()
	}
}

type chunk struct {
	at   time.Time
	data []byte
}

// pipe copies src to dst, each chunk written delay after it was read.
func (p *delayProxy) pipe(dst, src net.Conn) {
	q := make(chan chunk, 4096)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for c := range q {
			time.Sleep(time.Until(c.at.Add(p.delay)))
			if _, err := dst.Write(c.data); err != nil {
				src.Close()
				for range q {
				}
				return
			}
		}
		dst.Close()
	}()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			q <- chunk{time.Now(), append([]byte(nil), buf[:n]...)}
		}
		if err != nil {
			if err != io.EOF {
				dst.Close()
			}
			break
		}
	}
	close(q)
	<-done
}

func (p *delayProxy) close() {
	p.ln.Close()
	p.mu.Lock()
	for _, c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}

// Simultaneous joins of one new room on three nodes whose bus links have
// 200 ms of latency each way still make one room in which everyone sees
// everyone: no split room, no duplicate, no lost participantJoined.
func TestSimultaneousJoinsSlowBus(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("slow bus: -short")
	}
	const delay = 200 * time.Millisecond
	srvs := startClusterOn(t, 3, func(ports []int) func(*config.Config) {
		proxies := make([]*delayProxy, 3)
		for i, p := range ports {
			proxies[i] = newDelayProxy(t, "127.0.0.1:"+itoa(p), delay)
		}
		return func(c *config.Config) {
			c.Cluster.Routes = nil
			for i, p := range ports {
				if "127.0.0.1:"+itoa(p) != c.Cluster.Listen {
					c.Cluster.Routes = append(c.Cluster.Routes, "nats://127.0.0.1:"+itoa(proxies[i].port()))
				} else {
					c.Cluster.Advertise = "127.0.0.1:" + itoa(proxies[i].port()) // no direct route beside the proxies
				}
			}
		}
	})
	if rtt := waitRTT(t, srvs[0].Cluster()); rtt < 2*delay {
		t.Fatalf("bus round trip %s: the routes bypass the proxies", rtt)
	}
	for round := 0; round < 2; round++ {
		room := "slow-" + itoa(round)
		cs := make([]*client.Client, 3)
		took := make([]time.Duration, 3)
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i := range srvs {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				<-start
				t0 := time.Now()
				cs[i] = joinNoFatal(t, srvs[i], room, "p"+itoa(i))
				took[i] = time.Since(t0)
			}(i)
		}
		close(start)
		wg.Wait()
		t.Logf("%s: joins took %v with a %s bus round trip", room, took, srvs[0].Cluster().BusRTT())
		for _, c := range cs {
			if c == nil {
				t.Fatal("a join failed")
			}
		}
		for _, c := range cs[1:] {
			if c.LastJoin().Room.SID != cs[0].LastJoin().Room.SID {
				t.Fatalf("split room %s: sids %s and %s", room, cs[0].LastJoin().Room.SID, c.LastJoin().Room.SID)
			}
		}
		seeEachOther(t, cs...)
	}
}
