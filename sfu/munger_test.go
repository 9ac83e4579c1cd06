package sfu

import (
	"cmp"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
)

type mungerStep struct {
	op      byte // 'F' forward, 'D' drop, 'S' switch
	seq     uint16
	ts      uint32
	now     int64
	wantSeq uint16
	wantTS  uint32
	wantOK  bool
}

func fwd(seq uint16, ts uint32, now int64, wantSeq uint16, wantTS uint32) mungerStep {
	return mungerStep{op: 'F', seq: seq, ts: ts, now: now, wantSeq: wantSeq, wantTS: wantTS, wantOK: true}
}

func reject(seq uint16, ts uint32) mungerStep { return mungerStep{op: 'F', seq: seq, ts: ts} }
func drop(seq uint16) mungerStep              { return mungerStep{op: 'D', seq: seq} }

var switchStep = mungerStep{op: 'S'}

const ms = int64(1_000_000)

func TestMungerTable(t *testing.T) {
	tests := []struct {
		name             string
		firstSeq         uint16
		firstTS          uint32
		steps            []mungerStep
		translate, holes map[uint16]uint16 // out→in, sent / not sent
		notCurrent       []uint16
	}{
		{name: "in order", steps: []mungerStep{
			fwd(10, 100, 0, 1000, 5000), fwd(11, 100, 1, 1001, 5000), fwd(12, 3100, 2, 1002, 8000),
		}, translate: map[uint16]uint16{1000: 10, 1001: 11, 1002: 12}, notCurrent: []uint16{999, 1003}},
		{name: "loss stays a gap", steps: []mungerStep{
			fwd(10, 100, 0, 1000, 5000), fwd(12, 100, 0, 1002, 5000),
		}, holes: map[uint16]uint16{1001: 11}},
		{name: "late packet fills its gap", steps: []mungerStep{
			fwd(10, 100, 0, 1000, 5000), fwd(12, 200, 0, 1002, 5100), fwd(11, 150, 0, 1001, 5050),
		}, translate: map[uint16]uint16{1001: 11}},
		{name: "drop leaves no gap", steps: []mungerStep{
			fwd(10, 100, 0, 1000, 5000), drop(11), drop(12), fwd(13, 400, 0, 1001, 5300), drop(14), fwd(15, 600, 0, 1002, 5500),
		}, translate: map[uint16]uint16{1000: 10, 1001: 13, 1002: 15}},
		{name: "reordered around a drop", steps: []mungerStep{
			fwd(10, 100, 0, 1000, 5000), drop(12), fwd(11, 100, 0, 1001, 5000), fwd(13, 100, 0, 1002, 5000),
		}, translate: map[uint16]uint16{1001: 11, 1002: 13}},
		{name: "drops reordered within a frame", steps: []mungerStep{
			fwd(10, 100, 0, 1000, 5000), drop(14), drop(11), drop(13), drop(12), fwd(15, 100, 0, 1001, 5000),
		}, translate: map[uint16]uint16{1000: 10, 1001: 15}},
		{name: "loss between drops stays a gap", steps: []mungerStep{
			fwd(10, 100, 0, 1000, 5000), drop(13), drop(11), fwd(14, 100, 0, 1002, 5000), fwd(12, 100, 0, 1001, 5000),
		}, translate: map[uint16]uint16{1001: 12, 1002: 14}},
		{name: "late drop leaves a hole", steps: []mungerStep{
			fwd(10, 100, 0, 1000, 5000), fwd(12, 100, 0, 1002, 5000), drop(11), fwd(13, 100, 0, 1003, 5000),
		}, holes: map[uint16]uint16{1001: 11}},
		{name: "duplicate and dropped are refused", steps: []mungerStep{
			fwd(10, 100, 0, 1000, 5000), fwd(11, 100, 0, 1001, 5000), reject(10, 100), drop(12), reject(12, 100), fwd(13, 100, 0, 1002, 5000)}},
		{name: "drop right after forward takes it back", steps: []mungerStep{
			fwd(10, 100, 0, 1000, 5000), fwd(11, 200, 0, 1001, 5100), drop(11), fwd(12, 300, 0, 1001, 5200),
		}, translate: map[uint16]uint16{1001: 12}},
		{name: "seq wrap in and out", firstSeq: 65534, firstTS: 5000, steps: []mungerStep{
			fwd(65534, 1, 0, 65534, 5000), fwd(65535, 1, 0, 65535, 5000), fwd(0, 1, 0, 0, 5000),
			fwd(2, 1, 0, 2, 5000), fwd(1, 1, 0, 1, 5000), drop(3), fwd(4, 1, 0, 3, 5000),
		}, translate: map[uint16]uint16{65535: 65535, 0: 0, 1: 1, 3: 4}},
		{name: "ts wrap", firstSeq: 1, firstTS: 4294967000, steps: []mungerStep{
			fwd(7, 4294966000, 0, 1, 4294967000), fwd(8, 4294969000-1<<32, 0, 2, 2704), fwd(9, 4294972000-1<<32, 0, 3, 5704)}},
		{name: "switch advances by wall time", steps: []mungerStep{
			fwd(10, 100, 0, 1000, 5000), fwd(11, 3100, 10*ms, 1001, 8000), switchStep,
			fwd(40000, 777, 510*ms, 1002, 8000+45000), fwd(40001, 3777, 540*ms, 1003, 8000+48000), reject(39999, 0),
		}, translate: map[uint16]uint16{1002: 40000, 1003: 40001}, notCurrent: []uint16{1000, 1001}},
		{name: "switch with no elapsed time still advances", steps: []mungerStep{
			fwd(10, 100, 7, 1000, 5000), switchStep, fwd(10, 100, 7, 1001, 5001), switchStep, fwd(11, 50, 3, 1002, 5002)}},
		{name: "pause resume same source", steps: []mungerStep{
			fwd(10, 100, 0, 1000, 5000), switchStep, drop(11), drop(500), fwd(501, 900000, 2000*ms, 1001, 5000+180000),
			reject(499, 0), fwd(503, 906000, 2000*ms, 1003, 5000+186000)}},
		{name: "first packet of mapping dropped back", steps: []mungerStep{
			fwd(10, 100, 0, 1000, 5000), switchStep, fwd(50, 7, 0, 1001, 5001), drop(50), fwd(51, 8, 0, 1001, 5001), fwd(52, 9, 0, 1002, 5002),
		}, translate: map[uint16]uint16{1001: 51}},
		{name: "too old refused", steps: []mungerStep{
			fwd(10, 100, 0, 1000, 5000), fwd(2000, 100, 0, 2990, 5000), reject(11, 100), fwd(1990, 100, 0, 2980, 5000),
		}, notCurrent: []uint16{1000}},
		{name: "timestamps never go behind a previous mapping", steps: []mungerStep{
			fwd(10, 10000, 0, 1000, 5000), switchStep, fwd(20, 10000, 0, 1001, 5001), fwd(21, 9000, 0, 1002, 5001)}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.firstSeq == 0 {
				tc.firstSeq, tc.firstTS = 1000, 5000
			}
			m := NewMunger(90000, tc.firstSeq, tc.firstTS)
			if _, _, ok := m.Last(); ok {
				t.Fatal("Last ok before anything was forwarded")
			}
			for i, s := range tc.steps {
				switch s.op {
				case 'S':
					m.Switch()
				case 'D':
					m.Drop(s.seq)
				case 'F':
					seq, ts, ok := m.Forward(s.seq, s.ts, s.now)
					if ok != s.wantOK || (ok && (seq != s.wantSeq || ts != s.wantTS)) {
						t.Fatalf("step %d Forward(%d, %d) = %d, %d, %v; want %d, %d, %v",
							i, s.seq, s.ts, seq, ts, ok, s.wantSeq, s.wantTS, s.wantOK)
					}
				}
			}
			check := func(f func(uint16) (uint16, bool), name string, want map[uint16]uint16, not ...map[uint16]uint16) {
				for out, w := range want {
					if in, ok := f(out); !ok || in != w {
						t.Errorf("%s(%d) = %d, %v; want %d", name, out, in, ok, w)
					}
				}
				for _, n := range not {
					for out := range n {
						if in, ok := f(out); ok {
							t.Errorf("%s(%d) = %d, want not ok", name, out, in)
						}
					}
				}
			}
			other := map[uint16]uint16{}
			for _, out := range tc.notCurrent {
				other[out] = 0
			}
			check(m.Translate, "Translate", tc.translate, tc.holes, other)
			check(m.TranslateHole, "TranslateHole", tc.holes, tc.translate, other)
		})
	}
}

func TestTSAdvance(t *testing.T) {
	for _, tc := range []struct {
		elapsed int64
		rate    uint32
		want    uint64
	}{
		{-5, 90000, 1}, {0, 90000, 1}, {1000, 90000, 1}, {ms * 20, 48000, 960},
		{1_500_000_000, 90000, 135000}, {1 << 62, 90000, maxTSJump}, {3_000_000_000, 1 << 31, maxTSJump},
	} {
		if got := tsAdvance(tc.elapsed, tc.rate); got != tc.want {
			t.Errorf("tsAdvance(%d, %d) = %d, want %d", tc.elapsed, tc.rate, got, tc.want)
		}
	}
}

// simPacket is one packet of a simulated input stream.
type simPacket struct {
	idx   int // position in its segment
	seq   uint16
	ts    uint32
	fate  byte // 'f' forward, 'd' drop, 'l' lost upstream
	order float64
}

// simSource is a publisher stream whose seq/ts run on while it is not forwarded.
type simSource struct {
	seq uint16
	ts  uint32
}

type simParams struct {
	audio               bool
	lossP, dropP, reord float64
}

// genSegment makes n packets of src, in frames that are dropped as a whole
// (the first few always: waiting for a keyframe), and their delivery order:
// reordered within the window, some duplicated.
func genSegment(r *rand.Rand, src *simSource, n int, sp simParams) (pkts, deliveries []simPacket) {
	waitKey := r.IntN(5)
	for len(pkts) < n {
		per, step := 1, uint32(960)
		if !sp.audio {
			per, step = 1+r.IntN(4), 3000
		}
		fate := byte('f')
		if len(pkts) < waitKey || r.Float64() < sp.dropP {
			fate = 'd'
		}
		for k := 0; k < per && len(pkts) < n; k++ {
			p := simPacket{idx: len(pkts), seq: src.seq, ts: src.ts, fate: fate}
			if r.Float64() < sp.lossP {
				p.fate = 'l'
			}
			p.order = float64(p.idx) + r.Float64()*sp.reord
			pkts = append(pkts, p)
			src.seq++
		}
		src.ts += step
	}
	for _, p := range pkts {
		if p.fate == 'l' {
			continue
		}
		deliveries = append(deliveries, p)
		if r.IntN(50) == 0 {
			p.order += 1 + r.Float64()*sp.reord
			deliveries = append(deliveries, p)
		}
	}
	slices.SortStableFunc(deliveries, func(a, b simPacket) int { return cmp.Compare(a.order, b.order) })
	return pkts, deliveries
}

// mungerModel is a deliberately naive model of the required behaviour: an
// output slot for every input from the mapping's first forwarded packet on,
// except inputs dropped while nothing above them had been forwarded.
type mungerModel struct {
	clock       uint32
	everStarted bool
	lastOut     uint64
	lastTS      uint64
	lastNow     int64

	// Current mapping.
	started   bool
	start     int // idx of its first packet
	hiFwd     int
	startOut  uint64
	startTS   uint64
	startInTS uint32
	accepted  map[int]bool
	effDrop   map[int]bool
	outs      map[uint64]uint16 // out → in seq
}

func (md *mungerModel) newSegment() {
	md.started = false
	md.accepted, md.effDrop, md.outs = map[int]bool{}, map[int]bool{}, map[uint64]uint16{}
}

func (md *mungerModel) drop(p simPacket) {
	if md.started && p.idx > md.hiFwd {
		md.effDrop[p.idx] = true
	}
}

func (md *mungerModel) forward(p simPacket, now int64) (out, ts uint64, ok bool) {
	switch {
	case !md.started:
		md.started, md.start, md.hiFwd, md.startInTS = true, p.idx, p.idx, p.ts
		if md.everStarted {
			adv := (now - md.lastNow) * int64(md.clock) / 1e9
			md.startOut, md.startTS = md.lastOut+1, md.lastTS+uint64(max(1, adv))
		}
		md.everStarted = true
	case p.idx < md.start || md.accepted[p.idx]:
		return 0, 0, false
	}
	out = md.startOut
	for j := md.start; j < p.idx; j++ {
		if !md.effDrop[j] {
			out++
		}
	}
	ts = md.startTS + uint64(p.ts-md.startInTS)
	md.accepted[p.idx], md.hiFwd = true, max(md.hiFwd, p.idx)
	md.outs[out] = p.seq
	md.lastOut, md.lastTS, md.lastNow = max(md.lastOut, out), max(md.lastTS, ts), now
	return out, ts, true
}

// checkMapping compares hole count, Translate, TranslateHole and Lookup
// with the model at the end of a mapping.
func (md *mungerModel) checkMapping(t *testing.T, m *Munger, pkts []simPacket) {
	t.Helper()
	holes := map[uint64]uint16{} // slots of inputs lost or dropped too late
	out := md.startOut
	for j := md.start; j < len(pkts) && out <= md.lastOut; j++ {
		if !md.effDrop[j] {
			if !md.accepted[j] {
				holes[out] = pkts[j].seq
			}
			out++
		}
	}
	if got := int(md.lastOut-md.startOut+1) - len(md.outs); got != len(holes) {
		t.Fatalf("%d holes, want %d", got, len(holes))
	}
	// Dropped-run history is bounded: older outputs may be forgotten, but
	// never mistranslated. Runs are separated by at least one output slot,
	// so the last maxDropRanges slots are always known.
	forgettable := func(o uint64) bool { return md.lastOut-o >= maxDropRanges }
	outOf := map[uint16]uint64{}
	for o, in := range md.outs {
		outOf[in] = o
		if got, ok := m.Translate(uint16(o)); (!ok && !forgettable(o)) || (ok && got != in) {
			t.Fatalf("Translate(%d) = %d, %v; want %d", uint16(o), got, ok, in)
		}
	}
	for o, in := range holes {
		if got, ok := m.Translate(uint16(o)); ok {
			t.Fatalf("Translate(%d) = %d for a hole", uint16(o), got)
		}
		if got, ok := m.TranslateHole(uint16(o)); (!ok && !forgettable(o)) || (ok && got != in) {
			t.Fatalf("TranslateHole(%d) = %d, %v; want %d", uint16(o), got, ok, in)
		}
	}
	for _, p := range pkts {
		if o, sent := outOf[p.seq]; sent {
			wantTS := uint32(md.startTS + uint64(p.ts-md.startInTS))
			s, ts, ok := m.Lookup(p.seq, p.ts)
			if (!ok && !forgettable(o)) || (ok && (s != uint16(o) || ts != wantTS)) {
				t.Fatalf("Lookup(%d) = %d, %d, %v; want %d, %d", p.seq, s, ts, ok, uint16(o), wantTS)
			}
		}
	}
	if ls, lt, ok := m.Last(); !ok || ls != uint16(md.lastOut) || lt != uint32(md.lastTS) {
		t.Fatalf("Last() = %d, %d, %v; want %d, %d", ls, lt, ok, uint16(md.lastOut), uint32(md.lastTS))
	}
}

func TestMungerProperties(t *testing.T) {
	for seed := uint64(1); seed <= 40; seed++ {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) { runMungerProperty(t, seed, false) })
	}
	// Long mappings dropping every other frame overflow the dropped-run
	// history, exercising its eviction.
	for seed := uint64(100); seed <= 105; seed++ {
		t.Run(fmt.Sprint("heavy", seed), func(t *testing.T) { runMungerProperty(t, seed, true) })
	}
}

// pickBase16/32 favour bases just below the wrap point.
func pickBase16(r *rand.Rand) uint16 {
	switch r.IntN(3) {
	case 0:
		return uint16(65530 + r.IntN(6))
	case 1:
		return uint16(65536 - 300 + r.IntN(200))
	}
	return uint16(r.Uint32())
}

func pickBase32(r *rand.Rand) uint32 {
	switch r.IntN(3) {
	case 0:
		return uint32(1<<32 - 1000 + r.IntN(1000))
	case 1:
		return uint32(1<<32 - 200000 + r.IntN(100000))
	}
	return r.Uint32()
}

type emitted struct {
	out uint16
	ts  uint32
}

func runMungerProperty(t *testing.T, seed uint64, heavy bool) {
	r := rand.New(rand.NewPCG(seed, 0x5eed))
	sp := simParams{audio: seed%4 == 0 || heavy, lossP: r.Float64() * 0.08, dropP: r.Float64() * 0.3, reord: float64(r.IntN(6))}
	md := mungerModel{clock: 90000, startOut: uint64(pickBase16(r)), startTS: uint64(pickBase32(r))}
	if sp.audio {
		md.clock = 48000
	}
	m := NewMunger(md.clock, uint16(md.startOut), uint32(md.startTS))
	segments, n := 60, func() int { return 20 + r.IntN(250) }
	if heavy {
		segments, n, sp.dropP = 12, func() int { return 1500 + r.IntN(1500) }, 0.5
	}
	var all []emitted
	var src simSource
	now := int64(r.Uint64N(1 << 40))
	for segNo := 0; segNo < segments; segNo++ {
		if segNo == 0 || r.IntN(3) > 0 {
			src = simSource{seq: pickBase16(r), ts: pickBase32(r)} // new layer
		} else {
			skipped := r.IntN(400) // resume: the source ran on during the pause
			src.seq += uint16(skipped)
			src.ts += uint32(skipped) * 1500
		}
		pkts, deliveries := genSegment(r, &src, n(), sp)
		now += int64(r.IntN(3000)) * ms // pause before the switch
		m.Switch()
		md.newSegment()
		older := all[max(0, len(all)-200):]
		for _, p := range deliveries {
			now += int64(r.IntN(8)) * ms
			if p.fate == 'd' {
				m.Drop(p.seq)
				md.drop(p)
				continue
			}
			seq, ts, ok := m.Forward(p.seq, p.ts, now)
			wantOut, wantTS, wantOK := md.forward(p, now)
			if ok != wantOK || (ok && (seq != uint16(wantOut) || ts != uint32(wantTS))) {
				t.Fatalf("segment %d idx %d: Forward(%d, %d) = %d, %d, %v; want %d, %d, %v",
					segNo, p.idx, p.seq, p.ts, seq, ts, ok, uint16(wantOut), uint32(wantTS), wantOK)
			}
			if ok {
				all = append(all, emitted{seq, ts})
			}
		}
		if md.started {
			md.checkMapping(t, m, pkts)
			for _, e := range older {
				if _, ok := m.Translate(e.out); ok {
					t.Fatalf("Translate(%d) ok for an older mapping", e.out)
				}
			}
		}
	}
	if len(all) < 1000 {
		t.Fatalf("only %d packets forwarded", len(all))
	}
	checkWholeOutput(t, all)
}

// checkWholeOutput asserts that output sequence numbers are unique and that,
// in sequence order, timestamps never go backwards.
func checkWholeOutput(t *testing.T, all []emitted) {
	ext := make([]int64, len(all)) // unwrapped in emission order
	ext[0] = int64(all[0].out)
	for i := 1; i < len(all); i++ {
		ext[i] = ext[i-1] + int64(int16(all[i].out-all[i-1].out))
	}
	idx := make([]int, len(all))
	for i := range idx {
		idx[i] = i
	}
	slices.SortFunc(idx, func(a, b int) int { return cmp.Compare(ext[a], ext[b]) })
	for k := 1; k < len(idx); k++ {
		a, b := idx[k-1], idx[k]
		if ext[a] == ext[b] {
			t.Fatalf("output seq %d sent twice", all[a].out)
		}
		if d := int32(all[b].ts - all[a].ts); d < 0 {
			t.Fatalf("output ts goes back by %d between seq %d and %d", -d, all[a].out, all[b].out)
		}
	}
}

func TestMungerAllocs(t *testing.T) {
	m := NewMunger(90000, 1, 2)
	var seq uint16
	var ts uint32
	allocs := testing.AllocsPerRun(1000, func() {
		seq++
		ts += 3000
		if seq%7 == 0 {
			m.Drop(seq)
			return
		}
		if seq%97 == 0 {
			m.Switch()
		}
		m.Forward(seq, ts, int64(seq)*ms)
		m.Translate(seq)
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per call", allocs)
	}
}

func BenchmarkMungerForward(b *testing.B) {
	m := NewMunger(90000, 1, 2)
	b.ReportAllocs()
	var seq uint16 = 65000
	var ts uint32 = 1<<32 - 5000
	for i := 0; b.Loop(); i++ {
		seq++
		if i%4 == 0 {
			ts += 3000
		}
		if i%16 == 5 {
			m.Drop(seq)
			continue
		}
		m.Forward(seq, ts, int64(i)*ms)
	}
}

func TestMungerDropHistoryEviction(t *testing.T) {
	m := NewMunger(48000, 100, 0)
	var out []uint16 // out seq of input i, for the forwarded (even) inputs
	for i := 0; i < 4000; i++ {
		seq := uint16(60000 + i)
		if i%2 == 1 {
			m.Drop(seq)
			continue
		}
		o, _, ok := m.Forward(seq, uint32(i*960), int64(i)*20*ms)
		if !ok || o != uint16(100+i/2) {
			t.Fatalf("input %d: Forward = %d, %v; want %d", i, o, ok, 100+i/2)
		}
		out = append(out, o)
	}
	// Recent outputs translate; older ones are forgotten, never mistranslated.
	known := 0
	for k, o := range out {
		in, ok := m.Translate(o)
		if ok && in != uint16(60000+2*k) {
			t.Fatalf("Translate(%d) = %d, want %d", o, in, 60000+2*k)
		}
		if !ok && len(out)-k <= maxDropRanges {
			t.Fatalf("Translate(%d) forgotten, only %d outputs back", o, len(out)-k)
		}
		if ok {
			known++
		}
	}
	if known >= mungerWindow {
		t.Fatalf("%d outputs translatable, more than the window", known)
	}
	// A lost packet between drops still maps when it arrives late.
	m.Drop(uint16(60000 + 4001)) // an odd input: dropped
	m.Drop(uint16(60000 + 4003))
	if o, _, ok := m.Forward(uint16(60000+4002), 0, 0); !ok || o != uint16(100+2001) {
		t.Fatalf("lost packet after drops: %d, %v", o, ok)
	}
	// A retro drop reaching before a full history is ignored (its slot
	// stays a hole) but never corrupts the mapping: 4005..4297 odd (147)
	// and 4299..4400 (102) take slots after 4002's.
	for i := 4004; i < 4300; i += 2 {
		m.Drop(uint16(60000 + i))
	}
	m.Drop(uint16(60000 + 4005))
	if o, _, ok := m.Forward(uint16(60000+4400), 0, 0); !ok || o != uint16(100+2001+147+102) {
		t.Fatalf("after retro drops: %d, %v", o, ok)
	}
}

func TestMungerPad(t *testing.T) {
	m := NewMunger(90000, 65534, 100)
	var outs []uint16
	for _, in := range []uint16{10, 11} {
		o, _, ok := m.Forward(in, 1000, 0)
		if !ok {
			t.Fatal("forward refused")
		}
		outs = append(outs, o)
	}
	p1, pts, ok := m.Pad(0)
	p2, _, _ := m.Pad(0)
	if !ok || pts != 100 {
		t.Fatalf("pad: ok=%v ts=%d, want the last output ts 100", ok, pts)
	}
	o, _, ok := m.Forward(12, 4000, 0)
	if !ok {
		t.Fatal("forward after padding refused")
	}
	got := append(outs, p1, p2, o)
	for i := 1; i < len(got); i++ {
		if got[i] != got[i-1]+1 {
			t.Fatalf("output not contiguous across padding (wraps at 2^16): %v", got)
		}
	}
	if in, ok := m.Translate(o); !ok || in != 12 {
		t.Fatalf("Translate(%d) = %d, %v; want 12", o, in, ok)
	}
	m.Switch()
	if _, _, ok := m.Pad(0); ok {
		t.Fatal("padding allowed between Switch and the next mapping")
	}
}
