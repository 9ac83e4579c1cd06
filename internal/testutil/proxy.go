package testutil

import (
	"net"
	"sync"
	"sync/atomic"
	"testing"
)

// Proxy forwards TCP on loopback to a node until Cut, then refuses
// everything, as a node that died would; or until Frozen: then the open
// connections stay open but carry nothing more, as when a host loses power
// or its network.
type Proxy struct {
	ln     net.Listener
	mu     sync.Mutex
	conns  []net.Conn
	wg     sync.WaitGroup
	frozen atomic.Bool
}

// NewProxy listens on a free loopback port and forwards to target until
// the test ends.
func NewProxy(t testing.TB, target string) *Proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &Proxy{ln: ln}
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
			p.conns = append(p.conns, in, out)
			p.mu.Unlock()
			p.wg.Add(2)
			go func() { defer p.wg.Done(); p.pipe(out, in) }()
			go func() { defer p.wg.Done(); p.pipe(in, out) }()
		}
	}()
	t.Cleanup(func() { p.Cut(); p.wg.Wait() })
	return p
}

// pipe copies src to dst until either fails; frozen, it drops what it reads.
func (p *Proxy) pipe(dst, src net.Conn) {
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

// Freeze stops all traffic and new connections, and leaves the open
// connections open.
func (p *Proxy) Freeze() {
	p.frozen.Store(true)
	_ = p.ln.Close()
}

// Addr is the proxy's host:port.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Cut closes the listener and every connection.
func (p *Proxy) Cut() {
	_ = p.ln.Close()
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		_ = c.Close()
	}
	p.conns = nil
}
