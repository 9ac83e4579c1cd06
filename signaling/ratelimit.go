package signaling

import (
	"net"
	"net/netip"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/starling-rtc/starling/protocol"
)

// limit takes one token of the connection's message budget; a 429 when
// there is none. Called on the reader goroutine only.
func (c *Conn) limit() *protocol.Error {
	if c.opts.RateLimit <= 0 {
		return nil
	}
	if c.limiter == nil {
		c.limiter = rate.NewLimiter(rate.Limit(c.opts.RateLimit), max(1, c.opts.RateBurst))
	}
	if c.limiter.Allow() {
		return nil
	}
	return protocol.Errorf(protocol.CodeRateLimited,
		"rate limited: more than %g messages per second on this connection; the message was dropped", c.opts.RateLimit)
}

// IPLimiter is a token bucket per client IP (joins per second per IP).
// Loopback clients are not limited: they are local tools, tests and load
// generators, or a reverse proxy on the same host, behind which every
// client would share one bucket.
type IPLimiter struct {
	limit rate.Limit
	burst int

	mu        sync.Mutex
	buckets   map[string]*rate.Limiter
	lastSweep time.Time
}

// NewIPLimiter allows perSecond events per IP with bursts of burst; a nil
// *IPLimiter (perSecond <= 0) allows everything.
func NewIPLimiter(perSecond float64, burst int) *IPLimiter {
	if perSecond <= 0 {
		return nil
	}
	return &IPLimiter{limit: rate.Limit(perSecond), burst: max(1, burst), buckets: map[string]*rate.Limiter{}}
}

// Allow takes a token for the IP of remote (host:port or a bare IP).
func (l *IPLimiter) Allow(remote string) bool {
	if l == nil {
		return true
	}
	ip := remote
	if h, _, err := net.SplitHostPort(remote); err == nil {
		ip = h
	}
	if a, err := netip.ParseAddr(ip); err == nil && a.Unmap().IsLoopback() {
		return true
	}
	now := time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.lastSweep) > time.Minute {
		l.sweep(now)
	}
	b := l.buckets[ip]
	if b == nil {
		b = rate.NewLimiter(l.limit, l.burst)
		l.buckets[ip] = b
	}
	return b.AllowN(now, 1)
}

// sweep forgets IPs whose bucket is full again: they are idle, and a new
// bucket would be the same.
func (l *IPLimiter) sweep(now time.Time) {
	l.lastSweep = now
	for ip, b := range l.buckets {
		if b.TokensAt(now) >= float64(l.burst) {
			delete(l.buckets, ip)
		}
	}
}

// size is the number of IPs tracked (tests).
func (l *IPLimiter) size() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.buckets)
}
