package sfu

// Padding in a munged stream (bandwidth probes, prober.go).

// Pad takes the next output sequence number for a padding-only packet
// (bandwidth probing) carrying the last output timestamp; inputs after the
// highest forwarded map one slot later. Inputs from before the padding
// that arrive late (a publisher's repair) still map to their own slots:
// the padding is kept in the history of dropped runs (as a run that drops
// no input), so a probe does not make a late repair unplaceable
// (laterepair.go).
//
// A munger that has forwarded nothing yet pads too (padBeforeStart): a
// subscriber whose every video track was paused for bandwidth before its
// first keyframe has nothing else to probe with, and without a probe its
// estimate never learns that the link freed. ok=false between a Switch and
// the next mapping (the old mapping's slots are still looked up by NACKs).
// now (as Forward's) dates the padding, so that the first media after it
// advances the timestamp by the time that passed.
func (m *Munger) Pad(now int64) (outSeq uint16, outTS uint32, ok bool) {
	switch {
	case !m.started || m.padOnly:
		return m.padBeforeStart(now)
	case m.pending:
		return 0, 0, false
	}
	m.undo.valid = false
	out := m.lastOut + 1
	m.clearSent(m.lastOut, out)
	m.lastOut = out
	m.setSent(out)
	if !m.insertPad() {
		// No room in the history: re-base after the padding; inputs from
		// before it that arrive late are refused.
		m.off--
		m.baseOff = m.off
		m.drops.reset()
		m.floorIn = m.hiIn + 1
		m.startOut = out + 1
		return uint16(out), uint32(m.lastTS), true
	}
	m.off--
	return uint16(out), uint32(m.lastTS), true
}

// insertPad records one padding slot after the outputs of the inputs up to
// hiFwdIn (the last output before it is the highest forwarded input's, or
// padding after it): inputs above hiFwdIn, forwarded or still to come, map
// one slot later. Inputs in (hiFwdIn, hiIn] were dropped or not seen yet;
// their slots lie above lastOut, so the padding slot takes none of them.
// It reports false when the history has no room (all runs above hiFwdIn).
func (m *Munger) insertPad() bool {
	r := &m.drops
	b := m.hiFwdIn + 1
	pos := r.countLoAtMost(m.hiFwdIn) // runs wholly below b: hiFwdIn was forwarded
	if pos < r.n && r.at(pos).lo == b {
		r.at(pos).pads++ // padding again, or b was dropped: one run
	} else {
		if r.n == maxDropRanges {
			if pos == 0 {
				return false
			}
			m.evictDrop()
			pos--
		}
		below := m.baseOff
		if pos > 0 {
			below = r.at(pos - 1).offAfter()
		}
		r.insert(pos, dropRange{lo: b, hi: b - 1, offBefore: below, pads: 1})
	}
	for i := pos + 1; i < r.n; i++ {
		r.at(i).offBefore--
	}
	return true
}

// padBeforeStart pads a stream that has no mapping yet: the first padding
// takes the stream's first sequence number and timestamp, later ones the
// next sequence numbers; the first forwarded packet then starts a mapping
// right after the padding, as after a pause. No output slot of padding
// maps to an input: startOut stays above them.
func (m *Munger) padBeforeStart(now int64) (uint16, uint32, bool) {
	m.undo.valid = false
	if !m.started {
		m.sent = [mungerWindow / 64]uint64{}
		m.lastOut = uint64(m.firstSeq) + extBase
		m.lastTS = uint64(m.firstTS) + extBase
		m.started, m.pending, m.padOnly = true, true, true
	} else {
		m.clearSent(m.lastOut, m.lastOut+1)
		m.lastOut++
	}
	m.lastNow = now
	m.startOut = m.lastOut + 1
	m.setSent(m.lastOut)
	return uint16(m.lastOut), uint32(m.lastTS), true
}
