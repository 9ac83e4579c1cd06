package twcc

import (
	"encoding/binary"
	"math/rand/v2"
	"testing"

	"github.com/pion/interceptor"
	"github.com/pion/rtp"
	"github.com/pion/sdp/v3"
)

// TestSequenceNumberMatchesPion reads the transport-wide sequence number out
// of random packets (one-byte and two-byte extension headers, other
// extensions around it, CSRCs, padding between elements) as pion's header
// parser does.
func TestSequenceNumberMatchesPion(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	const id = 3
	for i := range 5000 {
		h := rtp.Header{Version: 2, SequenceNumber: uint16(i), SSRC: 7, PayloadType: 96}
		for range r.IntN(3) {
			h.CSRC = append(h.CSRC, r.Uint32())
		}
		two := r.IntN(4) == 0
		if two {
			h.ExtensionProfile = 0x1000
		} else {
			h.ExtensionProfile = 0xBEDE
		}
		h.Extension = r.IntN(8) != 0
		if h.Extension {
			ids := r.Perm(8)[:r.IntN(4)]
			if r.IntN(4) != 0 {
				ids = append(ids, id)
			}
			for _, e := range ids {
				e++ // 1..8
				n := 1 + r.IntN(6)
				if e == id {
					n = 2
				}
				v := make([]byte, n)
				for k := range v {
					v[k] = byte(r.Uint32())
				}
				if err := h.SetExtension(uint8(e), v); err != nil {
					t.Fatal(err)
				}
			}
		}
		raw, err := h.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		raw = append(raw, make([]byte, r.IntN(50))...)
		var p rtp.Header
		if _, err := p.Unmarshal(raw); err != nil {
			t.Fatal(err)
		}
		want, wantOK := uint16(0), false
		if v := p.GetExtension(id); len(v) >= 2 {
			want, wantOK = binary.BigEndian.Uint16(v), true
		}
		got, ok := SequenceNumber(raw, id)
		if got != want || ok != wantOK {
			t.Fatalf("packet %d (%x): got %d %v, pion reads %d %v", i, raw, got, ok, want, wantOK)
		}
		// Truncated packets are refused, never read past their end.
		for cut := range len(raw) {
			SequenceNumber(raw[:cut], id)
		}
	}
}

// TestExtensionID finds the transport-wide extension among the others a
// stream negotiated, and 0 where it has none.
func TestExtensionID(t *testing.T) {
	info := &interceptor.StreamInfo{RTPHeaderExtensions: []interceptor.RTPHeaderExtension{
		{URI: sdp.SDESMidURI, ID: 1}, {URI: sdp.TransportCCURI, ID: 5},
	}}
	if got := ExtensionID(info); got != 5 {
		t.Fatalf("ExtensionID = %d, want 5", got)
	}
	info.RTPHeaderExtensions = info.RTPHeaderExtensions[:1]
	if got := ExtensionID(info); got != 0 {
		t.Fatalf("ExtensionID without the extension = %d, want 0", got)
	}
}

// TestSequenceNumberAllocatesNothing: it runs once per packet received.
func TestSequenceNumberAllocatesNothing(t *testing.T) {
	h := rtp.Header{Version: 2, SSRC: 7, PayloadType: 96}
	if err := h.SetExtension(3, []byte{0x12, 0x34}); err != nil {
		t.Fatal(err)
	}
	raw, err := h.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if seq, ok := SequenceNumber(raw, 3); !ok || seq != 0x1234 {
		t.Fatalf("SequenceNumber = %#x %v, want 0x1234 true", seq, ok)
	}
	if n := testing.AllocsPerRun(100, func() { SequenceNumber(raw, 3) }); n != 0 {
		t.Fatalf("SequenceNumber allocates %v times per call", n)
	}
}
