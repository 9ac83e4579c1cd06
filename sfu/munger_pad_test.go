package sfu

import "testing"

// TestMungerPadKeepsLateInputs: padding (a bandwidth probe) between a
// packet lost upstream and its late repair no longer makes the repair
// unplaceable: it maps to the slot it had before the padding, dropped
// inputs keep taking no slot, padding slots translate to no input, and
// a lost input just above the last forwarded one, whose slot lay right
// after it, moves up past the padding.
func TestMungerPadKeepsLateInputs(t *testing.T) {
	m := NewMunger(90000, 65530, 100) // output wraps at 2^16 on the way
	out := map[uint16]uint16{}
	fwd := func(in uint16) {
		t.Helper()
		o, _, ok := m.Forward(in, uint32(in)*3000, 0)
		if !ok {
			t.Fatalf("input %d refused", in)
		}
		out[in] = o
	}
	for _, in := range []uint16{10, 11, 12} {
		fwd(in)
	}
	m.Drop(13)
	for _, in := range []uint16{14, 16, 17} { // 15 lost
		fwd(in)
	}
	p1, _, _ := m.Pad(0)
	p2, _, _ := m.Pad(0)
	fwd(18)
	if p1 != out[17]+1 || p2 != p1+1 || out[18] != p2+1 {
		t.Fatalf("padding slots %d %d between %d and %d", p1, p2, out[17], out[18])
	}
	fwd(15) // the late repair
	if out[15] != out[14]+1 || out[16] != out[15]+1 {
		t.Fatalf("late input 15 mapped to %d, want %d (between 14 and 16)", out[15], out[14]+1)
	}
	if _, _, ok := m.Forward(15, 15*3000, 0); ok {
		t.Fatal("the repair forwarded twice")
	}
	for _, p := range []uint16{p1, p2} {
		if in, ok := m.Translate(p); ok {
			t.Fatalf("padding slot %d translates to input %d", p, in)
		}
		if in, ok := m.TranslateHole(p); ok {
			t.Fatalf("padding slot %d is a hole of input %d", p, in)
		}
	}
	for _, in := range []uint16{12, 15, 18} {
		if got, ok := m.Translate(out[in]); !ok || got != in {
			t.Fatalf("Translate(%d) = %d, %v; want %d", out[in], got, ok, in)
		}
	}

	// 20 lost and 21 dropped above the last forwarded (19) when padding
	// comes: 20's slot was right after 19's; it moves up past the padding.
	fwd(19)
	m.Drop(21)
	p3, _, _ := m.Pad(0)
	fwd(22)
	if p3 != out[19]+1 || out[22] != p3+2 {
		t.Fatalf("padding at %d, input 22 at %d, after 19 at %d: want %d and %d", p3, out[22], out[19], out[19]+1, out[19]+3)
	}
	fwd(20)
	if out[20] != p3+1 {
		t.Fatalf("late input 20 at %d, want %d (after the padding)", out[20], p3+1)
	}
	if in, ok := m.TranslateHole(p3 + 1); ok {
		t.Fatalf("slot %d still a hole (of %d) after its repair", p3+1, in)
	}
}
