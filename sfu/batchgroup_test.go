package sfu

import (
	"net/netip"
	"testing"
)

// interleaved is a gathered batch as two processors' writers leave it:
// each of peers viewers' frames of per datagrams, two writers' runs
// interleaved datagram by datagram.
func interleaved(peers, per int) []outDatagram {
	var out []outDatagram
	for p := 0; p < peers; p += 2 {
		for k := range per {
			for q := p; q < min(p+2, peers); q++ {
				out = append(out, outDatagram{to: netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), uint16(10000+q)), n: 1000 + k})
			}
		}
	}
	return out
}

// TestGroup: a batch is grouped by peer, each peer's datagrams in the
// order they were queued, none lost or repeated; grouping allocates
// nothing once the writer's scratch has grown.
func TestGroup(t *testing.T) {
	w := &batchWriter{}
	batch := interleaved(33, 9)
	w.group(batch)
	seen := map[netip.AddrPort]int{}
	var last netip.AddrPort
	for i, d := range batch {
		if i > 0 && d.to != last {
			if _, again := seen[d.to]; again {
				t.Fatalf("peer %v comes back at %d: not grouped", d.to, i)
			}
		}
		if want := 1000 + seen[d.to]; d.n != want {
			t.Fatalf("peer %v's datagram %d is %d, want %d (order kept)", d.to, seen[d.to], d.n, want)
		}
		seen[d.to]++
		last = d.to
	}
	if len(seen) != 33 {
		t.Fatalf("%d peers, want 33", len(seen))
	}
	for p, n := range seen {
		if n != 9 {
			t.Fatalf("peer %v has %d datagrams, want 9", p, n)
		}
	}
	fresh := interleaved(33, 9)
	if a := testing.AllocsPerRun(20, func() {
		copy(batch, fresh)
		w.group(batch)
	}); a != 0 {
		t.Fatalf("%.1f allocations per grouping, want 0", a)
	}
}

// BenchmarkGroup: grouping a gathered batch (33 viewers' 9-packet frames).
func BenchmarkGroup(b *testing.B) {
	w := &batchWriter{}
	fresh := interleaved(33, 9)
	batch := make([]outDatagram, len(fresh))
	b.ReportAllocs()
	for b.Loop() {
		copy(batch, fresh)
		w.group(batch)
	}
}
