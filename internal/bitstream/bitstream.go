// Package bitstream writes and reads the bit-level syntax of codec headers:
// MSB-first bit fields, Exp-Golomb codes and H.264/H.265 RBSP escaping. The
// load generator and the tests use it to build synthetic media whose
// keyframes carry real headers, and to read those headers back.
package bitstream

// Writer appends MSB-first bits.
type Writer struct {
	b []byte
	n int // bits written
}

// Bytes is what was written, the last byte zero-padded.
func (w *Writer) Bytes() []byte { return w.b }

// Bit writes one bit (v != 0 is 1).
func (w *Writer) Bit(v uint) {
	if w.n%8 == 0 {
		w.b = append(w.b, 0)
	}
	if v != 0 {
		w.b[w.n/8] |= 0x80 >> (w.n % 8)
	}
	w.n++
}

// Bits writes the low n bits of v, most significant first.
func (w *Writer) Bits(v uint, n int) {
	for i := n - 1; i >= 0; i-- {
		w.Bit(v >> i & 1)
	}
}

// UE writes an unsigned Exp-Golomb code.
func (w *Writer) UE(v uint) {
	v++
	n := 0
	for x := v; x > 1; x >>= 1 {
		n++
	}
	w.Bits(0, n)
	w.Bits(v, n+1)
}

// SE writes a signed Exp-Golomb code.
func (w *Writer) SE(v int) {
	if v > 0 {
		w.UE(uint(2*v - 1))
	} else {
		w.UE(uint(-2 * v))
	}
}

// Trailing writes rbsp_trailing_bits: a one, then zeros to the byte boundary.
func (w *Writer) Trailing() {
	w.Bit(1)
	for w.n%8 != 0 {
		w.Bit(0)
	}
}

// Reader reads MSB-first bits.
type Reader struct {
	b []byte
	n int
}

// NewReader reads b from its first bit.
func NewReader(b []byte) *Reader { return &Reader{b: b} }

// Bits reads n bits; false when b runs out.
func (r *Reader) Bits(n int) (uint, bool) {
	var v uint
	for range n {
		if r.n >= len(r.b)*8 {
			return 0, false
		}
		v = v<<1 | uint(r.b[r.n/8]>>(7-r.n%8)&1)
		r.n++
	}
	return v, true
}

// UE reads an unsigned Exp-Golomb code.
func (r *Reader) UE() (uint, bool) {
	zeros := 0
	for {
		b, ok := r.Bits(1)
		if !ok || zeros > 31 {
			return 0, false
		}
		if b == 1 {
			break
		}
		zeros++
	}
	v, ok := r.Bits(zeros)
	return 1<<zeros - 1 + v, ok
}

// EscapeRBSP inserts emulation prevention bytes: no 00 00 0x (x ≤ 3)
// inside a NAL unit.
func EscapeRBSP(rbsp []byte) []byte {
	out := make([]byte, 0, len(rbsp)+4)
	zeros := 0
	for _, b := range rbsp {
		if zeros >= 2 && b <= 3 {
			out = append(out, 3)
			zeros = 0
		}
		out = append(out, b)
		if b == 0 {
			zeros++
		} else {
			zeros = 0
		}
	}
	return out
}

// UnescapeRBSP removes emulation prevention bytes into dst (reused).
func UnescapeRBSP(dst, nal []byte) []byte {
	dst = dst[:0]
	zeros := 0
	for _, b := range nal {
		if zeros >= 2 && b == 3 {
			zeros = 0
			continue
		}
		dst = append(dst, b)
		if b == 0 {
			zeros++
		} else {
			zeros = 0
		}
	}
	return dst
}
