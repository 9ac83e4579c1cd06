package bitstream

import (
	"bytes"
	"testing"
)

// TestRoundTrip: what Writer writes, Reader reads back; Exp-Golomb codes
// have their standard bit patterns.
func TestRoundTrip(t *testing.T) {
	w := &Writer{}
	w.UE(0) // 1
	w.UE(3) // 00100
	w.SE(-2)
	w.Bits(0x5a, 8)
	w.Trailing()
	r := NewReader(w.Bytes())
	if v, ok := r.UE(); !ok || v != 0 {
		t.Fatalf("ue 0: %d %v", v, ok)
	}
	if v, ok := r.UE(); !ok || v != 3 {
		t.Fatalf("ue 3: %d %v", v, ok)
	}
	if v, ok := r.UE(); !ok || v != 4 { // se(-2) is coded as ue(4)
		t.Fatalf("se -2: %d %v", v, ok)
	}
	if v, ok := r.Bits(8); !ok || v != 0x5a {
		t.Fatalf("bits: %x %v", v, ok)
	}
	if w.Bytes()[0]>>3 != 0b10010 {
		t.Fatalf("ue codes not standard: %08b", w.Bytes()[0])
	}
	if _, ok := NewReader(nil).UE(); ok {
		t.Fatal("read past the end")
	}
}

func TestEscapeRBSP(t *testing.T) {
	in := []byte{0, 0, 1, 0, 0, 0, 5, 0, 0, 3}
	esc := EscapeRBSP(in)
	if want := []byte{0, 0, 3, 1, 0, 0, 3, 0, 5, 0, 0, 3, 3}; !bytes.Equal(esc, want) {
		t.Fatalf("escaped % x, want % x", esc, want)
	}
	if back := UnescapeRBSP(nil, esc); !bytes.Equal(back, in) {
		t.Fatalf("unescaped % x, want % x", back, in)
	}
}

// TestH264SPS: the SPS written for each simulcast size reads back as that
// size (cropping included).
func TestH264SPS(t *testing.T) {
	var scratch []byte
	for _, s := range [][2]int{{1280, 720}, {640, 360}, {320, 180}, {1920, 1080}} {
		w, h, ok := H264SPSSize(H264SPS(s[0], s[1], 0), &scratch)
		if !ok || w != s[0] || h != s[1] {
			t.Fatalf("%dx%d read back as %dx%d (%v)", s[0], s[1], w, h, ok)
		}
	}
	if _, _, ok := H264SPSSize([]byte{0x65, 1, 2, 3, 4}, &scratch); ok {
		t.Fatal("an IDR slice parsed as an SPS")
	}
}
