package sfu

import (
	"testing"
	"time"

	"github.com/pion/rtcp"
)

func nackOf(seqs ...uint16) *rtcp.TransportLayerNack {
	return &rtcp.TransportLayerNack{MediaSSRC: 7, Nacks: rtcp.NackPairsFromSequenceNumbers(seqs)}
}

func nackSeqs(n *rtcp.TransportLayerNack) []uint16 {
	var out []uint16
	for _, p := range n.Nacks {
		out = append(out, p.PacketList()...)
	}
	return out
}

// TestNACKFilter: a packet is let through for retransmission at most
// maxResends times, and not once its first request is maxResendAge old.
func TestNACKFilter(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	i, _ := (&nackFilterFactory{now: func() time.Time { return now }}).NewInterceptor("pc")
	f := i.(*nackFilter)
	for round := 1; round <= 5; round++ {
		n := nackOf(100, 101, 65535)
		f.trim(n)
		got := nackSeqs(n)
		if round <= maxResends && len(got) != 3 {
			t.Fatalf("request %d: kept %v, want all 3", round, got)
		}
		if round > maxResends && len(got) != 0 {
			t.Fatalf("request %d: kept %v, want none (asked %d times already)", round, got, maxResends)
		}
		now = now.Add(100 * time.Millisecond)
	}
	// A new loss is asked for afresh; an old one ages out.
	n := nackOf(200)
	f.trim(n)
	now = now.Add(maxResendAge + time.Millisecond)
	n2 := nackOf(200, 201)
	f.trim(n2)
	if got := nackSeqs(n2); len(got) != 1 || got[0] != 201 {
		t.Fatalf("after %v: kept %v, want only the new 201", maxResendAge, got)
	}
	// Another stream has its own history.
	other := &rtcp.TransportLayerNack{MediaSSRC: 8, Nacks: rtcp.NackPairsFromSequenceNumbers([]uint16{100})}
	f.trim(other)
	if got := nackSeqs(other); len(got) != 1 {
		t.Fatalf("another stream's NACK trimmed: %v", got)
	}
}
