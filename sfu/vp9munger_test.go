package sfu

import (
	"bytes"
	"testing"
)

// vp9Packet is a VP9 payload: I (15-bit or 7-bit picture id), L with TID
// and, in non-flexible mode, TL0PICIDX; B on frame starts.
func vp9Packet(pid uint16, pid15 bool, tid, tl0 uint8, flexible bool) []byte {
	b0 := byte(0x80 | 0x20 | 0x08) // I, L, B
	if flexible {
		b0 |= 0x10
	}
	p := []byte{b0}
	if pid15 {
		p = append(p, 0x80|byte(pid>>8), byte(pid))
	} else {
		p = append(p, byte(pid)&0x7f)
	}
	p = append(p, tid<<5)
	if !flexible {
		p = append(p, tl0)
	}
	return append(p, 0xaa, 0xbb, 0xcc)
}

// TestVP9MungerContinuity: across switches between inputs with unrelated
// picture id and TL0PICIDX bases, the output continues from the last
// value; the body is untouched and the length never changes.
func TestVP9MungerContinuity(t *testing.T) {
	var m VP9Munger
	dst := make([]byte, 64)
	out := func(p []byte) (pid uint16, tl0 uint8) {
		t.Helper()
		n, err := m.Rewrite(dst, p)
		if err != nil || n != len(p) {
			t.Fatalf("rewrite: n %d err %v", n, err)
		}
		if !bytes.Equal(dst[n-3:n], []byte{0xaa, 0xbb, 0xcc}) || dst[0] != p[0] {
			t.Fatalf("body or flags changed: % x", dst[:n])
		}
		d, _ := parseVP9(dst[:n])
		return d.pid, dst[d.tl0At]
	}
	// Layer A: pids 100..104, TL0 7.. (TID 0 each).
	var lastPID uint16
	var lastTL0 uint8
	for i := range 5 {
		lastPID, lastTL0 = out(vp9Packet(uint16(100+i), true, 0, uint8(7+i), false))
	}
	// Switch to layer B near the 15-bit wrap, TL0 near the 8-bit wrap.
	m.Switch()
	for i := range 5 {
		pid, tl0 := out(vp9Packet(uint16(32765+i), true, 0, uint8(254+i), false))
		if pid != (lastPID+1)&0x7fff || tl0 != lastTL0+1 {
			t.Fatalf("after switch, packet %d: pid %d tl0 %d, want %d %d", i, pid, tl0, (lastPID+1)&0x7fff, lastTL0+1)
		}
		lastPID, lastTL0 = pid, tl0
	}
	// A TID 1 picture refers to the last TL0 picture: TL0PICIDX unchanged.
	if pid, tl0 := out(vp9Packet(32770&0x7fff, true, 1, 2, false)); pid != (lastPID+1)&0x7fff || tl0 != lastTL0 {
		t.Fatalf("TID 1 picture: pid %d tl0 %d, want %d %d", pid, tl0, (lastPID+1)&0x7fff, lastTL0)
	}
	// A 7-bit input stays 7-bit (in place) and maps within 7 bits.
	m.Switch()
	n, err := m.Rewrite(dst, vp9Packet(5, false, 0, 1, true))
	if err != nil || n != 1+1+1+3 || dst[1]&0x80 != 0 {
		t.Fatalf("7-bit picture id: n %d err %v % x", n, err, dst[:n])
	}
	// Truncated descriptors are errors, not panics.
	for _, p := range [][]byte{{}, {0x80}, {0x80, 0x80}, {0xa0, 0x01}, {0xa0, 0x01, 0x00}} {
		if _, err := m.Rewrite(dst, p); err == nil {
			t.Fatalf("truncated % x accepted", p)
		}
	}
}

// FuzzVP9Rewrite: any payload and switch pattern: no panic, the output has
// the input's length and body.
func FuzzVP9Rewrite(f *testing.F) {
	f.Add(vp9Packet(100, true, 0, 7, false), uint8(3))
	f.Add(vp9Packet(5, false, 2, 0, true), uint8(0))
	f.Add([]byte{0xff, 0xff}, uint8(1))
	f.Fuzz(func(t *testing.T, data []byte, switches uint8) {
		var m VP9Munger
		dst := make([]byte, len(data)+8)
		for i := 0; i < 4; i++ {
			if switches&(1<<i) != 0 {
				m.Switch()
			}
			n, err := m.Rewrite(dst, data)
			if err != nil {
				continue
			}
			d, _ := parseVP9(data)
			if n != len(data) || !bytes.Equal(dst[d.size:n], data[d.size:]) {
				t.Fatalf("rewrite changed the length or body: % x -> % x", data, dst[:n])
			}
		}
	})
}
