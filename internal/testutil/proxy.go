package testutil

import (
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Proxy forwards TCP on loopback to a node until Cut, then refuses
// everything, as a node that died would; or until Frozen: then the open
// connections stay open but carry nothing more, as when a host loses power
// or its network. A half proxy's Cut closes the clients' side only, a
// delay proxy delays every byte: see NewHalfProxy and NewDelayProxy.
type Proxy struct {
	ln       net.Listener
	mu       sync.Mutex
	clients  []net.Conn
	upstream []net.Conn
	wg       sync.WaitGroup
	frozen   atomic.Bool
	half     bool
	pipe     func(dst, src net.Conn)
}

// NewProxy listens on a free loopback port and forwards to target until
// the test ends.
func NewProxy(t testing.TB, target string) *Proxy {
	t.Helper()
	p := &Proxy{}
	p.pipe = p.copyUnlessFrozen
	p.start(t, target)
	return p
}

// NewHalfProxy is a proxy whose Cut closes the clients' side only and
// stops forwarding, leaving the node's side open: the node does not see
// the client go (until its keepalive gives up), as on a dead network.
// Neither direction's end closes the other side.
func NewHalfProxy(t testing.TB, target string) *Proxy {
	t.Helper()
	p := &Proxy{half: true}
	p.pipe = func(dst, src net.Conn) { _, _ = io.Copy(dst, src) }
	p.start(t, target)
	return p
}

// NewDelayProxy is a proxy that delays every byte by delay in each
// direction (order kept), like a slow link between nodes.
func NewDelayProxy(t testing.TB, target string, delay time.Duration) *Proxy {
	t.Helper()
	p := &Proxy{}
	p.pipe = func(dst, src net.Conn) { delayPipe(dst, src, delay) }
	p.start(t, target)
	return p
}

func (p *Proxy) start(t testing.TB, target string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p.ln = ln
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			in, err := ln.Accept()
			if err != nil {
				return
			}
			out, err := net.Dial("tcp", target)
			if err != nil {
				_ = in.Close()
				continue
			}
			p.mu.Lock()
			p.clients, p.upstream = append(p.clients, in), append(p.upstream, out)
			p.mu.Unlock()
			p.wg.Add(2)
			go func() { defer p.wg.Done(); p.pipe(out, in) }()
			go func() { defer p.wg.Done(); p.pipe(in, out) }()
		}
	}()
	t.Cleanup(func() {
		p.Cut()
		p.closeAll(&p.upstream)
		p.wg.Wait()
	})
}

// copyUnlessFrozen copies src to dst until either fails; frozen, it drops
// what it reads.
func (p *Proxy) copyUnlessFrozen(dst, src net.Conn) {
	defer func() {
		if !p.frozen.Load() { // a silent host sends no FIN either
			_ = dst.Close()
		}
	}()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if err != nil {
			return
		}
		if p.frozen.Load() {
			continue
		}
		if _, err := dst.Write(buf[:n]); err != nil {
			return
		}
	}
}

type chunk struct {
	at   time.Time
	data []byte
}

// delayPipe copies src to dst, each chunk written delay after it was read.
func delayPipe(dst, src net.Conn, delay time.Duration) {
	q := make(chan chunk, 4096)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for c := range q {
			time.Sleep(time.Until(c.at.Add(delay)))
			if _, err := dst.Write(c.data); err != nil {
				_ = src.Close()
				for range q {
				}
				return
			}
		}
		_ = dst.Close()
	}()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			q <- chunk{time.Now(), append([]byte(nil), buf[:n]...)}
		}
		if err != nil {
			if err != io.EOF {
				_ = dst.Close()
			}
			break
		}
	}
	close(q)
	<-done
}

// Freeze stops all traffic and new connections, and leaves the open
// connections open.
func (p *Proxy) Freeze() {
	p.frozen.Store(true)
	_ = p.ln.Close()
}

// Addr is the proxy's host:port.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Port is the proxy's port.
func (p *Proxy) Port() int { return p.ln.Addr().(*net.TCPAddr).Port }

// Cut closes the listener and every connection (a half proxy: the
// clients' side only).
func (p *Proxy) Cut() {
	_ = p.ln.Close()
	p.closeAll(&p.clients)
	if !p.half {
		p.closeAll(&p.upstream)
	}
}

func (p *Proxy) closeAll(conns *[]net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range *conns {
		_ = c.Close()
	}
	*conns = nil
}
