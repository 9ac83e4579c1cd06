package sfu

import (
	"testing"
	"time"
)

func TestFallbackEstimator(t *testing.T) {
	f := newFallbackEstimator(1_000_000)
	now := time.Unix(1000, 0)
	f.onLoss(128, now) // 50% loss: rate x0.75
	if got := f.estimate(now); got != 750_000 {
		t.Fatalf("after 50%% loss: %d, want 750000", got)
	}
	f.onLoss(128, now.Add(50*time.Millisecond)) // too soon: ignored
	if got := f.estimate(now); got != 750_000 {
		t.Fatalf("a second report within 200 ms changed the rate: %d", got)
	}
	f.onLoss(12, now.Add(time.Second)) // ~5%: hold
	if got := f.estimate(now); got != 750_000 {
		t.Fatalf("moderate loss changed the rate: %d", got)
	}
	f.onLoss(0, now.Add(2*time.Second)) // no loss: +5%
	if got := f.estimate(now); got != 787_500 {
		t.Fatalf("after a clean report: %d, want 787500", got)
	}
	f.onREMB(400_000, now.Add(3*time.Second))
	if got := f.estimate(now.Add(4 * time.Second)); got != 400_000 {
		t.Fatalf("fresh REMB not used: %d", got)
	}
	if got := f.estimate(now.Add(9 * time.Second)); got != 787_500 {
		t.Fatalf("stale REMB still used: %d", got)
	}
	for i := 0; i < 100; i++ {
		f.onLoss(255, now.Add(time.Duration(10+i)*time.Second))
	}
	if got := f.estimate(now.Add(200 * time.Second)); got != fallbackMin {
		t.Fatalf("rate fell below the floor: %d", got)
	}
	if !twccNegotiated("a=extmap:5 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01") || twccNegotiated("a=extmap:1 urn:ietf:params:rtp-hdrext:sdes:mid") {
		t.Fatal("twccNegotiated misreads the SDP")
	}
}
