package sfu

import (
	"bytes"
	"math/rand/v2"
	"testing"
)

// vp8Fields describes a descriptor to build in tests.
type vp8Fields struct {
	start        bool
	partID       uint8
	nonRef       bool
	pidBits      int // 0 none, 7, 15
	pid          uint16
	hasTL0       bool
	tl0          uint8
	hasTID       bool
	tid          uint8
	y            bool
	hasKey       bool
	keyIdx       uint8
	noExtensionX bool // omit the X byte when nothing needs it
}

func buildVP8(f vp8Fields, body []byte) []byte {
	b0 := f.partID & 0x07
	if f.start {
		b0 |= 0x10
	}
	if f.nonRef {
		b0 |= 0x20
	}
	var x byte
	if f.pidBits != 0 {
		x |= 0x80
	}
	if f.hasTL0 {
		x |= 0x40
	}
	if f.hasTID {
		x |= 0x20
	}
	if f.hasKey {
		x |= 0x10
	}
	out := []byte{b0}
	if x != 0 || !f.noExtensionX {
		out[0] |= 0x80
		out = append(out, x)
	}
	switch f.pidBits {
	case 7:
		out = append(out, byte(f.pid&0x7f))
	case 15:
		out = append(out, 0x80|byte(f.pid>>8)&0x7f, byte(f.pid))
	}
	if f.hasTL0 {
		out = append(out, f.tl0)
	}
	if f.hasTID || f.hasKey {
		tk := f.keyIdx & 0x1f
		if f.hasTID {
			tk |= f.tid << 6
			if f.y {
				tk |= 0x20
			}
		}
		out = append(out, tk)
	}
	return append(out, body...)
}

func TestParseVP8(t *testing.T) {
	body := []byte{0x10, 0x02, 0x9d}
	for _, f := range []vp8Fields{
		{start: true, noExtensionX: true},
		{partID: 3, nonRef: true},
		{start: true, pidBits: 7, pid: 0x55},
		{start: true, pidBits: 15, pid: 0x7abc, hasTL0: true, tl0: 200, hasTID: true, tid: 2, y: true, hasKey: true, keyIdx: 17},
		{pidBits: 15, pid: 1, hasKey: true, keyIdx: 31},
		{hasTL0: true, tl0: 9, hasTID: true, tid: 1},
	} {
		p := buildVP8(f, body)
		d, ok := parseVP8(p)
		if !ok || d.size != len(p)-len(body) {
			t.Fatalf("%+v: ok=%v size=%d, want %d", f, ok, d.size, len(p)-len(body))
		}
		if d.start != f.start || d.partID != f.partID || d.hasPID != (f.pidBits != 0) ||
			(f.pidBits != 0 && (d.pid != f.pid || d.pid15 != (f.pidBits == 15))) ||
			d.hasTL0 != f.hasTL0 || d.tl0 != f.tl0 || d.hasTID != f.hasTID || d.tid != f.tid ||
			d.hasKey != f.hasKey || (f.hasKey && d.keyIdx != f.keyIdx) {
			t.Fatalf("%+v parsed as %+v", f, d)
		}
		for n := 0; n < d.size; n++ {
			if _, ok := parseVP8(p[:n]); ok && n < d.size {
				t.Fatalf("%+v: truncated to %d bytes parsed", f, n)
			}
		}
	}
}

func rewriteOK(t *testing.T, v *VP8Munger, p []byte) (vp8Desc, []byte) {
	t.Helper()
	dst := make([]byte, len(p)+4)
	n, err := v.Rewrite(dst, p)
	if err != nil {
		t.Fatalf("Rewrite(% x): %v", p, err)
	}
	d, ok := parseVP8(dst[:n])
	if !ok || !d.hasPID || !d.pid15 {
		t.Fatalf("output % x has no 15-bit picture id", dst[:n])
	}
	return d, dst[d.size:n]
}

func TestVP8MungerRewrite(t *testing.T) {
	body := []byte{0x50, 0x01, 0x9d, 0x01, 0x2a}
	t.Run("identity first mapping", func(t *testing.T) {
		var v VP8Munger
		f := vp8Fields{start: true, pidBits: 15, pid: 0x7fff, hasTL0: true, tl0: 255, hasTID: true, y: true, hasKey: true, keyIdx: 31}
		p := buildVP8(f, body)
		d, b := rewriteOK(t, &v, p)
		if d.pid != 0x7fff || d.tl0 != 255 || d.keyIdx != 31 || !bytes.Equal(b, body) || d.tkByte&0xe0 != 0x20 {
			t.Fatalf("got %+v body % x", d, b)
		}
		f.pid, f.tl0, f.keyIdx, f.start = 0, 0, 0, false
		if d, _ = rewriteOK(t, &v, buildVP8(f, body)); d.pid != 0 || d.tl0 != 0 || d.keyIdx != 0 || d.start {
			t.Fatalf("wrap: got %+v", d)
		}
	})
	t.Run("7-bit grows and continues past 127", func(t *testing.T) {
		var v VP8Munger
		for i, want := range []uint16{126, 127, 128, 129} {
			p := buildVP8(vp8Fields{start: true, pidBits: 7, pid: uint16(126 + i)}, body)
			if d, b := rewriteOK(t, &v, p); d.pid != want || !bytes.Equal(b, body) || d.hasTL0 || d.hasTIDK {
				t.Fatalf("got %+v, want pid %d", d, want)
			}
		}
	})
	t.Run("no picture id counts frames", func(t *testing.T) {
		var v VP8Munger
		var pids []uint16
		for _, f := range []vp8Fields{{start: true, noExtensionX: true}, {}, {start: true}, {partID: 1, start: true}, {start: true, noExtensionX: true}} {
			d, _ := rewriteOK(t, &v, buildVP8(f, body))
			pids = append(pids, d.pid)
		}
		if pids[1] != pids[0] || pids[2] != pids[0]+1 || pids[3] != pids[2] || pids[4] != pids[2]+1 {
			t.Fatalf("pids %v", pids)
		}
	})
	t.Run("switch continues, gaps stay, reorder keeps offset", func(t *testing.T) {
		var v VP8Munger
		a := vp8Fields{start: true, pidBits: 15, pid: 1000, hasTL0: true, tl0: 50, hasTID: true, hasKey: true, keyIdx: 3}
		rewriteOK(t, &v, buildVP8(a, body))
		a.pid, a.tid, a.hasKey = 1002, 2, false // 1001 dropped upstream: stays a gap
		if d, _ := rewriteOK(t, &v, buildVP8(a, body)); d.pid != 1002 || d.tl0 != 50 {
			t.Fatalf("got %+v", d)
		}
		v.Switch()
		b := vp8Fields{start: true, pidBits: 7, pid: 5, hasTL0: true, tl0: 7, hasTID: true, hasKey: true, keyIdx: 30}
		if d, _ := rewriteOK(t, &v, buildVP8(b, body)); d.pid != 1003 || d.tl0 != 51 || d.keyIdx != 4 {
			t.Fatalf("after switch got %+v", d)
		}
		b.pid, b.tl0, b.keyIdx = 7, 8, 31
		if d, _ := rewriteOK(t, &v, buildVP8(b, body)); d.pid != 1005 || d.tl0 != 52 || d.keyIdx != 5 {
			t.Fatalf("got %+v", d)
		}
		b.pid, b.tl0, b.tid = 6, 7, 1
		if d, _ := rewriteOK(t, &v, buildVP8(b, body)); d.pid != 1004 || d.tl0 != 51 {
			t.Fatalf("reordered got %+v", d)
		}
		b.pid = 4 // before the mapping started
		dst := make([]byte, 64)
		if _, err := v.Rewrite(dst, buildVP8(b, body)); err != ErrVP8Stale {
			t.Fatalf("stale picture: err %v", err)
		}
	})
	t.Run("switch onto a higher temporal layer picture", func(t *testing.T) {
		var v VP8Munger
		rewriteOK(t, &v, buildVP8(vp8Fields{start: true, pidBits: 15, pid: 9, hasTL0: true, tl0: 20, hasTID: true}, body))
		v.Switch()
		d, _ := rewriteOK(t, &v, buildVP8(vp8Fields{start: true, pidBits: 15, pid: 500, hasTL0: true, tl0: 90, hasTID: true, tid: 1}, body))
		if d.pid != 10 || d.tl0 != 20 {
			t.Fatalf("got %+v", d)
		}
	})
	t.Run("in place", func(t *testing.T) {
		var v VP8Munger
		p := buildVP8(vp8Fields{start: true, noExtensionX: true}, body)
		buf := make([]byte, len(p)+4)
		copy(buf, p)
		n, err := v.Rewrite(buf, buf[:len(p)])
		if err != nil || n != len(p)+3 || !bytes.Equal(buf[4:n], body) || buf[0] != 0x90 {
			t.Fatalf("n=%d err=%v % x", n, err, buf[:n])
		}
	})
	t.Run("errors", func(t *testing.T) {
		var v VP8Munger
		if _, err := v.Rewrite(make([]byte, 10), []byte{0x80}); err != ErrVP8Truncated {
			t.Fatalf("truncated: %v", err)
		}
		if _, err := v.Rewrite(make([]byte, 6), buildVP8(vp8Fields{start: true}, body)); err != ErrShortBuffer {
			t.Fatalf("short dst: %v", err)
		}
	})
}

// vp8Stream is a simulated simulcast layer: its own picture id width and
// bases, running whether or not it is forwarded.
type vp8Stream struct {
	pidBits int
	pid     uint16
	tl0     uint8
	keyIdx  uint8
	frame   int
}

func (s *vp8Stream) nextFrame(key bool) vp8Fields {
	s.frame++
	s.pid++
	if s.pidBits == 7 {
		s.pid &= 0x7f
	} else {
		s.pid &= 0x7fff
	}
	tid := [4]uint8{0, 2, 1, 2}[s.frame%4]
	if key {
		tid = 0
		s.keyIdx = (s.keyIdx + 1) & 0x1f
		s.frame = 0
	}
	if tid == 0 {
		s.tl0++
	}
	return vp8Fields{start: true, pidBits: s.pidBits, pid: s.pid, hasTL0: true, tl0: s.tl0,
		hasTID: true, tid: tid, y: tid > 0, hasKey: true, keyIdx: s.keyIdx}
}

func TestVP8MungerProperties(t *testing.T) {
	for seed := uint64(1); seed <= 30; seed++ {
		r := rand.New(rand.NewPCG(seed, 7741))
		streams := make([]vp8Stream, 3)
		for i := range streams {
			streams[i] = vp8Stream{pidBits: []int{0, 7, 15}[r.IntN(3)], pid: uint16(r.Uint32()), tl0: uint8(r.Uint32()), keyIdx: uint8(r.Uint32())}
			if r.IntN(2) == 0 {
				streams[i].pid = 0x7ffa // near the 15-bit wrap
			}
		}
		var v VP8Munger
		cur := -1
		var prevPID, lastTL0, lastKey uint16
		dst := make([]byte, 64)
		body := []byte{1, 2, 3}
		for frame := 0; frame < 5000; frame++ {
			key := false
			if cur < 0 || r.IntN(40) == 0 {
				cur, key = r.IntN(3), true
				v.Switch()
			}
			var f vp8Fields
			for i := range streams {
				if g := streams[i].nextFrame(key && i == cur); i == cur {
					f = g
				}
			}
			packets := 1 + r.IntN(3)
			order := []int{0}
			for k := 1; k < packets; k++ {
				order = append(order, k)
			}
			if f.pidBits != 0 && packets > 2 && r.IntN(2) == 0 {
				order[1], order[2] = order[2], order[1] // reordered within the frame
			}
			for _, k := range order {
				pf := f
				pf.start = k == 0
				pf.partID = 0
				n, err := v.Rewrite(dst, buildVP8(pf, body))
				if err != nil {
					t.Fatalf("seed %d frame %d: %v", seed, frame, err)
				}
				d, ok := parseVP8(dst[:n])
				if !ok || !d.pid15 || !bytes.Equal(dst[d.size:n], body) || d.start != pf.start {
					t.Fatalf("seed %d: bad output % x", seed, dst[:n])
				}
				if frame > 0 && d.pid != (prevPID+1)&0x7fff {
					t.Fatalf("seed %d frame %d: pid %d after %d (stream %d, %d-bit)", seed, frame, d.pid, prevPID, cur, f.pidBits)
				}
				wantTL0 := lastTL0
				if f.tid == 0 {
					wantTL0 = (lastTL0 + 1) & 0xff
				}
				if frame > 0 && uint16(d.tl0) != wantTL0 {
					t.Fatalf("seed %d frame %d: tl0 %d want %d", seed, frame, d.tl0, wantTL0)
				}
				wantKey := lastKey
				if key {
					wantKey = (lastKey + 1) & 0x1f
				}
				if frame > 0 && uint16(d.keyIdx) != wantKey {
					t.Fatalf("seed %d frame %d: keyidx %d want %d", seed, frame, d.keyIdx, wantKey)
				}
				if k == order[len(order)-1] {
					prevPID, lastTL0, lastKey = d.pid, uint16(d.tl0), uint16(d.keyIdx)
				}
			}
		}
	}
}

func TestVP8MungerAllocs(t *testing.T) {
	var v VP8Munger
	p := buildVP8(vp8Fields{start: true, pidBits: 7, hasTL0: true, hasTID: true, hasKey: true}, make([]byte, 1000))
	dst := make([]byte, len(p)+4)
	allocs := testing.AllocsPerRun(1000, func() {
		p[2] = (p[2] + 1) & 0x7f
		if p[2] == 0 {
			v.Switch()
		}
		if _, err := v.Rewrite(dst, p); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per Rewrite", allocs)
	}
}

func BenchmarkVP8Rewrite(b *testing.B) {
	var v VP8Munger
	p := buildVP8(vp8Fields{start: true, pidBits: 7, hasTL0: true, hasTID: true, hasKey: true}, make([]byte, 1100))
	dst := make([]byte, len(p)+4)
	b.ReportAllocs()
	for b.Loop() {
		p[2] = (p[2] + 1) & 0x7f
		v.Rewrite(dst, p)
	}
}

func FuzzVP8Rewrite(f *testing.F) {
	f.Add([]byte{0x90, 0xe0, 0x81, 0x23, 0x05, 0x40, 0x10, 0x02, 0x9d}, uint8(0))
	f.Add([]byte{0x10, 0x00}, uint8(1))
	f.Add([]byte{0x80, 0x80, 0x7f, 0xaa}, uint8(2))
	f.Fuzz(func(t *testing.T, data []byte, switches uint8) {
		var v VP8Munger
		// Feed the input as several packets, switching now and then, so
		// that state carried between calls is fuzzed too.
		dst := make([]byte, len(data)+4)
		for i := 0; i <= len(data); i += 7 {
			if switches&(1<<(i%8)) != 0 {
				v.Switch()
			}
			p := data[i:]
			n, err := v.Rewrite(dst, p)
			if err != nil {
				continue
			}
			in, _ := parseVP8(p)
			d, ok := parseVP8(dst[:n])
			if !ok || !d.pid15 || n-d.size != len(p)-in.size || !bytes.Equal(dst[d.size:n], p[in.size:]) ||
				d.start != in.start || d.partID != in.partID || d.hasTL0 != in.hasTL0 || d.hasKey != in.hasKey {
				t.Fatalf("input % x rewritten to % x", p, dst[:n])
			}
			if n > len(p)+3 {
				t.Fatalf("grew by %d", n-len(p))
			}
		}
	})
}
