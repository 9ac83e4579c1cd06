package sfu

const (
	// mungerWindow is how many recent output sequence numbers the munger
	// remembers as sent. It bounds duplicate detection and Translate, and
	// packets that would land further back than this are refused: a receiver
	// has given up on them long ago. pion's NACK responder keeps 1024 too.
	mungerWindow = 1024

	// maxDropRanges bounds the history of Drop()ped input runs kept to map
	// late packets and NACKs. A run is typically one dropped frame, so at
	// 30 fps with every other frame dropped this covers about 8 s, well past
	// what a NACK is still good for. Power of two.
	maxDropRanges = 128

	// extBase keeps extended counters far from zero so that stepping back
	// from a mapping's first packet cannot underflow.
	extBase = 1 << 32

	// maxTSJump caps the timestamp advance across a pause: a jump of 2^31
	// or more would read as going backwards to a receiver.
	maxTSJump = 1 << 30
)

// dropRange is a run of consecutive input sequence numbers that were
// deliberately not forwarded and take no output sequence numbers, and/or
// pads padding-only packets (Pad) sent in output slots of their own just
// after the outputs of the inputs below lo. A run of padding alone is
// empty: hi = lo-1.
type dropRange struct {
	lo, hi    uint64 // extended input seqs, inclusive
	offBefore uint64 // in-out offset for inputs just below lo
	pads      uint64 // padding slots before the inputs from lo on
}

// offAfter is the in-out offset for inputs just above the run.
func (d *dropRange) offAfter() uint64 { return d.offBefore + d.hi - d.lo + 1 - d.pads }

// mungerUndo holds what the last successful Forward changed, so that a Drop
// of that same packet (the caller failed to send it after all) can take its
// output slot back instead of leaving a hole.
type mungerUndo struct {
	valid     bool
	seq       uint16
	started   bool
	pending   bool
	padOnly   bool
	out       uint64
	lastOut   uint64
	lastTS    uint64
	lastNow   int64
	hiIn      uint64
	hiFwdIn   uint64
	tsRef     uint64
	wasMapped bool
}

// Munger maps input (seq, ts) of the currently forwarded source to one continuous output stream.
// Not safe for concurrent use; the caller serialises calls.
//
// All counters are kept extended to 64 bits. Within one mapping an input
// sequence number s maps to s - off(s), where off grows by one for every
// Drop()ped input below s; the offsets are kept as a short sorted list of
// dropped runs so that late (reordered) packets map exactly as they would
// have in order. Timestamps use a single offset per mapping.
type Munger struct {
	clockRate uint32
	firstSeq  uint16
	firstTS   uint32

	started bool // something was forwarded, or padding sent (padOnly)
	pending bool // the next Forward starts a new mapping
	padOnly bool // padding sent, no media yet (munger_pad.go)

	lastOut uint64 // highest extended output seq
	lastTS  uint64 // highest extended output ts
	lastNow int64  // now of the last forwarded packet

	// hintTS, when hinted, is the output timestamp the next mapping's
	// first packet should get: its capture time on the output timeline,
	// from the publisher's sender reports (HintNextTS).
	hintTS uint32
	hinted bool

	// Current mapping.
	startIn  uint64 // extended input seq of the mapping's first packet
	startOut uint64
	floorIn  uint64 // lowest input seq whose offset is still known
	hiIn     uint64 // highest input seq seen, forwarded or dropped
	hiFwdIn  uint64 // highest input seq forwarded
	off      uint64 // in-out offset for inputs above hiIn
	baseOff  uint64 // in-out offset for inputs in [floorIn, first run)
	tsRef    uint64 // highest extended input ts, the reference for extending
	tsOff    uint64 // out-in timestamp offset
	tsFloor  uint64 // first output ts of the mapping
	drops    dropRing

	sent [mungerWindow / 64]uint64 // bit per output seq mod mungerWindow
	undo mungerUndo
}

// NewMunger returns a munger whose output begins at firstSeq/firstTS.
func NewMunger(clockRate uint32, firstSeq uint16, firstTS uint32) *Munger {
	return &Munger{clockRate: clockRate, firstSeq: firstSeq, firstTS: firstTS}
}

// Switch marks that the next forwarded packet starts a new input mapping (new layer, or resume after pause/mute).
// Until that packet arrives the previous mapping stays current for Translate and Lookup.
func (m *Munger) Switch() {
	m.pending = true
	m.hinted = false
	m.undo.valid = false
}

// HintNextTS gives the output timestamp that puts the next mapping's first
// packet at its capture time on the output timeline (after Switch). Without
// it a new mapping continues from the previous one by the time that passed
// between the two packets' *arrivals*, so any difference in the two
// layers' delays to the SFU (a stalled reader, a queue) shifts the stream
// against its sender reports and against the other tracks: lip sync drifts
// by that much until the next report. The hint is taken only if it lies
// within half a second of the arrival-based value, and never before the
// last output timestamp.
func (m *Munger) HintNextTS(ts uint32) {
	m.hintTS, m.hinted = ts, true
}

// Last returns the highest output seq and ts and whether anything was forwarded yet.
func (m *Munger) Last() (seq uint16, ts uint32, ok bool) {
	return uint16(m.lastOut), uint32(m.lastTS), m.started
}

// extendSeq places seq in the current mapping's extended input space.
func (m *Munger) extendSeq(seq uint16) uint64 {
	return m.hiIn + uint64(int64(int16(seq-uint16(m.hiIn))))
}

// extendTS places ts in the current mapping's extended input ts space.
func (m *Munger) extendTS(ts uint32) uint64 {
	return m.tsRef + uint64(int64(int32(ts-uint32(m.tsRef))))
}

// Forward maps one input packet. now is a monotonic clock in nanoseconds (passed in for testability).
// ok=false means drop the packet: it is from before the current mapping
// started, is older than the munger remembers, was Drop()ped before, or its
// output slot was already sent (a duplicate).
func (m *Munger) Forward(seq uint16, ts uint32, now int64) (outSeq uint16, outTS uint32, ok bool) {
	u := mungerUndo{
		valid: true, seq: seq, started: m.started, pending: m.pending, padOnly: m.padOnly,
		lastOut: m.lastOut, lastTS: m.lastTS, lastNow: m.lastNow,
		hiIn: m.hiIn, hiFwdIn: m.hiFwdIn, tsRef: m.tsRef, wasMapped: m.started && !m.pending,
	}
	m.undo.valid = false
	if !u.wasMapped {
		m.startMapping(seq, ts, now)
		u.out = m.lastOut
		m.undo = u
		return uint16(m.lastOut), uint32(m.lastTS), true
	}

	in := m.extendSeq(seq)
	var off uint64
	if in > m.hiIn {
		off = m.off
	} else {
		var known bool
		if off, known = m.offsetFor(in); !known {
			return 0, 0, false
		}
	}
	out := in - off
	if out <= m.lastOut {
		if m.lastOut-out >= mungerWindow || m.isSent(out) {
			return 0, 0, false
		}
	} else {
		m.clearSent(m.lastOut, out)
		m.lastOut = out
	}
	m.setSent(out)
	if in > m.hiIn {
		m.hiIn = in
	}
	if in > m.hiFwdIn {
		m.hiFwdIn = in
	}

	tsIn := m.extendTS(ts)
	if tsIn > m.tsRef {
		m.tsRef = tsIn
	}
	oTS := tsIn + m.tsOff
	if oTS < m.tsFloor {
		// Only a source whose timestamps run backwards gets here; never let
		// the output go back behind the previous mapping.
		oTS = m.tsFloor
	}
	if oTS > m.lastTS {
		m.lastTS = oTS
	}
	m.lastNow = now
	u.out = out
	m.undo = u
	return uint16(out), uint32(oTS), true
}

// startMapping forwards the first packet of a mapping and sets its offsets.
func (m *Munger) startMapping(seq uint16, ts uint32, now int64) {
	in := uint64(seq) + extBase
	tsIn := uint64(ts) + extBase
	var out, oTS uint64
	if !m.started {
		out = uint64(m.firstSeq) + extBase
		oTS = uint64(m.firstTS) + extBase
		m.sent = [mungerWindow / 64]uint64{}
	} else {
		out = m.lastOut + 1
		oTS = m.lastTS + tsAdvance(now-m.lastNow, m.clockRate)
		if m.hinted {
			// Never back to or behind the last output (the old layer may
			// have sent this very capture instant already).
			h := max(m.lastTS+uint64(int64(int32(m.hintTS-uint32(m.lastTS)))), m.lastTS+1)
			if d := int64(h - oTS); d < int64(m.clockRate/2) && d > -int64(m.clockRate/2) {
				oTS = h
			}
		}
		m.clearSent(m.lastOut, out)
	}
	m.started, m.pending, m.hinted, m.padOnly = true, false, false, false
	m.startIn, m.startOut = in, out
	m.floorIn, m.hiIn, m.hiFwdIn = in, in, in
	m.off, m.baseOff = in-out, in-out
	m.drops.reset()
	m.tsRef, m.tsOff, m.tsFloor = tsIn, oTS-tsIn, oTS
	m.lastOut, m.lastTS, m.lastNow = out, oTS, now
	m.setSent(out)
}

// tsAdvance converts the wall time a pause lasted into timestamp units, at
// least 1 so a new mapping never repeats the previous timestamp.
func tsAdvance(elapsed int64, clockRate uint32) uint64 {
	if elapsed <= 0 {
		return 1
	}
	// Split seconds from the remainder so elapsed×clockRate cannot overflow.
	const sec = 1_000_000_000
	adv := uint64(elapsed/sec)*uint64(clockRate) + uint64(elapsed%sec)*uint64(clockRate)/sec
	switch {
	case adv < 1:
		return 1
	case adv > maxTSJump:
		return maxTSJump
	}
	return adv
}

// offsetFor returns the in-out offset of an input at or below hiIn, or
// false if it was dropped or is older than what the mapping remembers.
func (m *Munger) offsetFor(in uint64) (uint64, bool) {
	if in < m.floorIn {
		return 0, false
	}
	k := m.drops.countLoAtMost(in)
	if k == 0 {
		return m.baseOff, true
	}
	if d := m.drops.at(k - 1); in > d.hi {
		return d.offAfter(), true
	}
	return 0, false
}

// Drop tells the munger that an input packet of the current mapping is deliberately not forwarded (e.g. waiting for a keyframe, dropped temporal layer): the output must not show a hole for it.
//
// That is only possible while no later input has been forwarded; a Drop
// arriving after that leaves a hole, since the following output sequence
// numbers are already on the wire. Drop of the packet the immediately
// preceding Forward returned takes that Forward back. Drops while no mapping
// is established (after Switch, before the next Forward) are ignored.
func (m *Munger) Drop(seq uint16) {
	if m.undo.valid && m.undo.seq == seq {
		m.rollback()
	}
	m.undo.valid = false
	if !m.started || m.pending {
		return
	}
	in := m.extendSeq(seq)
	switch {
	case in > m.hiIn:
		m.hiIn = in
		if n := m.drops.n; n > 0 && m.drops.at(n-1).hi+1 == in {
			m.drops.at(n - 1).hi = in
		} else {
			if n == maxDropRanges {
				m.evictDrop()
			}
			m.drops.insert(m.drops.n, dropRange{lo: in, hi: in, offBefore: m.off})
		}
		m.off++
	case in > m.hiFwdIn && in >= m.floorIn:
		m.dropRetro(in)
	}
}

// rollback undoes the last Forward.
func (m *Munger) rollback() {
	u := &m.undo
	m.unsetSent(u.out)
	m.started, m.pending, m.padOnly = u.started, u.pending, u.padOnly
	m.lastOut, m.lastTS, m.lastNow = u.lastOut, u.lastTS, u.lastNow
	// If it started a mapping, the restored pending flag makes the next
	// Forward start it again; otherwise restore the mapping's frontier.
	if u.wasMapped {
		m.hiIn, m.hiFwdIn, m.tsRef = u.hiIn, u.hiFwdIn, u.tsRef
	}
}

// dropRetro records a drop below hiIn while nothing above it was forwarded
// yet (reordering inside a dropped frame): all output slots from in upwards
// are still unused, so they can all shift down by one.
func (m *Munger) dropRetro(in uint64) {
	r := &m.drops
	pos := r.countLoAtMost(in) // index of the first run above in
	if pos > 0 && r.at(pos-1).hi >= in {
		return // already dropped
	}
	// A run with padding keeps its lo: its padding follows the inputs below
	// lo (never the case here: padding starts at hiFwdIn+1, below in).
	left, right := pos > 0 && r.at(pos-1).hi+1 == in, pos < r.n && r.at(pos).lo == in+1 && r.at(pos).pads == 0
	switch {
	case left && right:
		r.at(pos - 1).hi = r.at(pos).hi
		r.remove(pos)
	case left:
		r.at(pos - 1).hi = in
	case right:
		r.at(pos).lo = in
		pos++ // its offBefore, for inputs below in, is unchanged
	default:
		if r.n == maxDropRanges {
			if pos == 0 {
				return // older than the history: leave the hole
			}
			m.evictDrop()
			pos--
		}
		below := m.baseOff
		if pos > 0 {
			below = r.at(pos - 1).offAfter()
		}
		r.insert(pos, dropRange{lo: in, hi: in, offBefore: below})
		pos++
	}
	for i := pos; i < r.n; i++ {
		r.at(i).offBefore++
	}
	m.off++
}

// evictDrop forgets the oldest dropped run; inputs up to its end can no
// longer be mapped.
func (m *Munger) evictDrop() {
	d := m.drops.at(0)
	m.baseOff = d.offAfter()
	m.floorIn = d.hi + 1
	m.drops.popFront()
}

// slot resolves an output seq of the current mapping to its input seq and
// whether that output was actually sent.
func (m *Munger) slot(outSeq uint16) (in uint64, sent, ok bool) {
	if !m.started {
		return 0, false, false
	}
	out := m.lastOut + uint64(int64(int16(outSeq-uint16(m.lastOut))))
	if out > m.lastOut || out < m.startOut || m.lastOut-out >= mungerWindow {
		return 0, false, false
	}
	in = out + m.baseOff
	if k := m.drops.countOutAtMost(out); k > 0 {
		d := m.drops.at(k - 1)
		if in = out + d.offAfter(); in <= d.hi {
			return 0, false, false // a padding slot: no input
		}
	}
	if in < m.floorIn {
		return 0, false, false
	}
	return in, m.isSent(out), true
}

// Translate maps an OUTPUT seq back to the INPUT seq of the current mapping (for NACK handling later); ok=false if it belongs to an older mapping or was never sent.
func (m *Munger) Translate(outSeq uint16) (inSeq uint16, ok bool) {
	in, sent, ok := m.slot(outSeq)
	return uint16(in), ok && sent
}

// TranslateHole is Translate for output seqs that were not sent: holes left
// by upstream loss or by late Drops. If the packet reached the buffer after
// all, retransmitting it on a NACK repairs the hole.
func (m *Munger) TranslateHole(outSeq uint16) (inSeq uint16, ok bool) {
	in, sent, ok := m.slot(outSeq)
	return uint16(in), ok && !sent
}

// Lookup maps an input packet of the current mapping the way Forward did or
// would, without changing any state: it rewrites retransmissions. ok=false
// for inputs the current mapping cannot place (dropped, too old, not seen).
func (m *Munger) Lookup(seq uint16, ts uint32) (outSeq uint16, outTS uint32, ok bool) {
	if !m.started {
		return 0, 0, false
	}
	in := m.extendSeq(seq)
	if in > m.hiIn {
		return 0, 0, false
	}
	off, known := m.offsetFor(in)
	out := in - off
	if !known || out > m.lastOut || m.lastOut-out >= mungerWindow {
		return 0, 0, false
	}
	oTS := max(m.extendTS(ts)+m.tsOff, m.tsFloor)
	return uint16(out), uint32(oTS), true
}

func (m *Munger) setSent(out uint64) {
	i := out % mungerWindow
	m.sent[i/64] |= 1 << (i % 64)
}

func (m *Munger) unsetSent(out uint64) {
	i := out % mungerWindow
	m.sent[i/64] &^= 1 << (i % 64)
}

func (m *Munger) isSent(out uint64) bool {
	i := out % mungerWindow
	return m.sent[i/64]&(1<<(i%64)) != 0
}

// clearSent forgets the slots in (from, to]: their bits still describe
// packets one window older.
func (m *Munger) clearSent(from, to uint64) {
	if to-from >= mungerWindow {
		m.sent = [mungerWindow / 64]uint64{}
		return
	}
	for o := from + 1; o <= to; o++ {
		m.unsetSent(o)
	}
}

// dropRing holds the dropped runs of the current mapping in input order, in
// a fixed ring so that neither forgetting the oldest run nor adding one
// allocates.
type dropRing struct {
	buf     [maxDropRanges]dropRange
	head, n int
}

func (r *dropRing) reset() { r.head, r.n = 0, 0 }

func (r *dropRing) at(i int) *dropRange { return &r.buf[(r.head+i)&(maxDropRanges-1)] }

func (r *dropRing) popFront() {
	r.head = (r.head + 1) & (maxDropRanges - 1)
	r.n--
}

// insert puts d at index pos; the caller ensures there is room. Runs are
// added at or near the end, so few elements move.
func (r *dropRing) insert(pos int, d dropRange) {
	for i := r.n; i > pos; i-- {
		*r.at(i) = *r.at(i - 1)
	}
	*r.at(pos) = d
	r.n++
}

func (r *dropRing) remove(pos int) {
	for i := pos; i < r.n-1; i++ {
		*r.at(i) = *r.at(i + 1)
	}
	r.n--
}

// countLoAtMost returns how many runs start at or below the input seq in.
func (r *dropRing) countLoAtMost(in uint64) int {
	lo, hi := 0, r.n
	for lo < hi {
		mid := int(uint(lo+hi) >> 1)
		if r.at(mid).lo <= in {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	return lo
}

// countOutAtMost returns how many runs are followed by an output seq at or
// below out: the first output after a run's inputs below lo is lo-offBefore
// (its first padding slot, or the first input after it).
func (r *dropRing) countOutAtMost(out uint64) int {
	lo, hi := 0, r.n
	for lo < hi {
		mid := int(uint(lo+hi) >> 1)
		if d := r.at(mid); d.lo-d.offBefore <= out {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	return lo
}
