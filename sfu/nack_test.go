package sfu

import (
	"slices"
	"testing"
)

func TestNackStateAsksUntilRepaired(t *testing.T) {
	n := newNackState()
	for _, s := range []uint16{65533, 65534, 1, 2} { // 65535 and 0 lost across the wrap
		n.received(s)
	}
	if got := n.collect(); !slices.Equal(got, []uint16{65535, 0}) {
		t.Fatalf("first NACK asks for %v, want [65535 0]", got)
	}
	n.received(0) // repaired (an RTX packet, rewritten)
	for i := 2; i <= maxNACKsPerPacket; i++ {
		if got := n.collect(); !slices.Equal(got, []uint16{65535}) {
			t.Fatalf("NACK %d asks for %v, want [65535]", i, got)
		}
	}
	if got := n.collect(); len(got) != 0 {
		t.Fatalf("after %d NACKs it still asks for %v", maxNACKsPerPacket, got)
	}
}

func TestNackStateIgnoresJumps(t *testing.T) {
	n := newNackState()
	n.received(100)
	n.received(100 + maxMissing + 10) // a new numbering, not a loss
	n.received(100 + maxMissing + 11)
	n.received(100 + maxMissing + 11) // a duplicate
	if got := n.collect(); len(got) != 0 {
		t.Fatalf("asks for %d packets after a jump", len(got))
	}
	n.received(100 + 2*maxMissing) // a wide gap: only the newest maxMissing are kept
	n.received(100 + 2*maxMissing + maxMissing/2)
	if got := n.collect(); len(got) != maxMissing || got[len(got)-1] != 100+2*maxMissing+maxMissing/2-1 {
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
			n.collect()
		}
	}
}
