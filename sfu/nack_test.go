package sfu

import (
	"slices"
	"testing"
	"time"

	"github.com/starling-rtc/starling/internal/clock"
)

// TestNackStateAsksUntilRepaired: a packet is asked for every
// nackInterval until it arrives; one never repaired is asked for
// maxNACKsPerPacket times and for minNACKSpan, then given up.
func TestNackStateAsksUntilRepaired(t *testing.T) {
	n := newNackState()
	for _, s := range []uint16{65533, 65534, 1, 2} { // 65535 and 0 lost across the wrap
		n.received(s)
	}
	at := clock.Nanos()
	if got := n.collect(at); !slices.Equal(got, []uint16{65535, 0}) {
		t.Fatalf("first NACK asks for %v, want [65535 0]", got)
	}
	n.received(0) // repaired (an RTX packet, rewritten)
	asks := 1
	for ; asks < 1000; asks++ {
		at += nackInterval
		got := n.collect(at)
		if len(got) == 0 {
			break
		}
		if !slices.Equal(got, []uint16{65535}) {
			t.Fatalf("NACK %d asks for %v, want [65535]", asks+1, got)
		}
	}
	if want := max(maxNACKsPerPacket, int(minNACKSpan/nackInterval)+1); asks != want {
		t.Fatalf("asked %d times, want %d (%d NACKs and %v)", asks, want, maxNACKsPerPacket, time.Duration(minNACKSpan))
	}
}

// TestNackStateStarvedLoop: a NACK loop that runs late or often asks for
// each packet once per run and never twice within half an interval (a
// gap's wake and the tick together send one NACK), and a loop starved to
// one run a second still asks maxNACKsPerPacket times before giving up.
func TestNackStateStarvedLoop(t *testing.T) {
	n := newNackState()
	n.kick = make(chan struct{}, 1)
	n.received(10)
	n.received(12)
	n.received(15) // a second gap while the wake is pending: no block
	if len(n.kick) != 1 {
		t.Fatal("a new gap did not wake the NACK loop")
	}
	at := clock.Nanos()
	if got := n.collect(at); !slices.Equal(got, []uint16{11, 13, 14}) {
		t.Fatalf("woken by the gap: asks for %v, want [11 13 14]", got)
	}
	if got := n.collect(at); len(got) != 0 {
		t.Fatalf("the tick at the same instant asks again for %v", got)
	}
	if got := n.collect(at + nackInterval/2 - 1); len(got) != 0 {
		t.Fatalf("asks again within half an interval: %v", got)
	}
	asks := 1
	for ; asks < 100; asks++ {
		at += int64(time.Second) // starved: one run a second
		got := n.collect(at)
		if len(got) == 0 {
			break
		}
		if len(got) != 3 {
			t.Fatalf("starved run %d asks for %v, want each missing packet once", asks, got)
		}
	}
	if asks != maxNACKsPerPacket {
		t.Fatalf("a loop starved to one run a second asked %d times, want %d", asks, maxNACKsPerPacket)
	}
}

func TestNackStateIgnoresJumps(t *testing.T) {
	n := newNackState()
	n.received(100)
	n.received(100 + maxMissing + 10) // a new numbering, not a loss
	n.received(100 + maxMissing + 11)
	n.received(100 + maxMissing + 11) // a duplicate
	if got := n.collect(clock.Nanos()); len(got) != 0 {
		t.Fatalf("asks for %d packets after a jump", len(got))
	}
	n.received(100 + 2*maxMissing) // a wide gap: only the newest maxMissing are kept
	n.received(100 + 2*maxMissing + maxMissing/2)
	if got := n.collect(clock.Nanos()); len(got) != maxMissing || got[len(got)-1] != 100+2*maxMissing+maxMissing/2-1 {
		t.Fatalf("asks for %d packets ending at %v, want %d ending at the newest", len(got), got[len(got)-1:], maxMissing)
	}
}

func BenchmarkNackStateReceived(b *testing.B) {
	n := newNackState()
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		s := uint16(i)
		if s%50 == 7 {
			continue // a loss now and then
		}
		n.received(s)
		if s%50 == 20 {
			n.received(s - 13) // its repair
			n.collect(clock.Nanos())
		}
	}
}
