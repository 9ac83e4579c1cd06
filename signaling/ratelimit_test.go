package signaling

import (
	"testing"
	"time"
)

func TestIPLimiter(t *testing.T) {
	var none *IPLimiter
	if !none.Allow("192.0.2.1:1") || NewIPLimiter(0, 5) != nil {
		t.Fatal("a nil limiter must allow everything")
	}
	l := NewIPLimiter(1, 3)
	for i := 0; i < 3; i++ {
		if !l.Allow("192.0.2.1:1000") {
			t.Fatalf("join %d within the burst refused", i)
		}
	}
	if l.Allow("192.0.2.1:2000") {
		t.Fatal("4th join from the same IP (other port) allowed")
	}
	if !l.Allow("192.0.2.2:1000") || !l.Allow("[2001:db8::1]:1") {
		t.Fatal("another IP is limited by the first one's bucket")
	}
	for i := 0; i < 100; i++ {
		if !l.Allow("127.0.0.1:5") || !l.Allow("[::1]:5") {
			t.Fatal("loopback clients must not be limited")
		}
	}
	// Idle buckets are forgotten.
	l.lastSweep = time.Time{}
	time.Sleep(10 * time.Millisecond)
	l.mu.Lock()
	l.sweep(time.Now().Add(time.Hour))
	l.mu.Unlock()
	if n := l.size(); n != 0 {
		t.Fatalf("%d buckets left after an idle sweep", n)
	}
}
