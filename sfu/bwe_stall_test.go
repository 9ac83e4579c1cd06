package sfu

import "testing"

// TestBWEReceiverStallsHold: a receiver that stops reading for 200 or 500
// ms every 2 s and then reads everything at once (a client on a starved
// machine) on a free link, 1.6 Mbit/s sent: the estimate stays above what
// is sent. Its late reads are one burst, one group; before, the burst was
// split into a group per frame and read as a queue: the estimate fell to
// 1.30-1.32 Mbit/s (85% of what flowed), below the layer flowing.
func TestBWEReceiverStallsHold(t *testing.T) {
	for _, stall := range []int64{200_000, 500_000} {
		s := newLinkSim(t, 3_000_000)
		s.media = 1_600_000
		s.jitter = 2000
		s.stallEvery, s.stallFor = 2_000_000, stall
		low := uint64(1 << 62)
		s.run(30_000_000, func() {
			if s.now > 2_000_000 {
				low = min(low, s.b.estimate())
			}
		})
		t.Logf("stalls of %d ms every 2 s: lowest estimate %d bit/s, %d delay decreases",
			stall/1000, low, s.b.counts.delayDecreases.Load())
		if low < 1_600_000*11/10 {
			t.Errorf("stalls of %d ms: the estimate fell to %d bit/s on a free link carrying 1.6 Mbit/s", stall/1000, low)
		}
	}
}
