package mixer

import (
	"sync/atomic"
	"time"

	"github.com/starling-rtc/starling/internal/clock"
	"github.com/starling-rtc/starling/sfu"
	"github.com/thesyncim/gopus"
)

// counters are process-wide totals, for metrics.
var counters struct {
	frames, encodes, concealed, fec, decodeErrors, encodeErrors, shrinks, skipped atomic.Uint64
}

// Totals are the mixers' process-wide counters.
type Totals struct {
	Frames       uint64 // frames mixed with at least one voice
	Encodes      uint64 // Opus frames encoded (shared and mix-minus)
	Concealed    uint64 // input frames concealed (loss or lateness)
	FEC          uint64 // of which recovered from in-band FEC
	DecodeErrors uint64
	EncodeErrors uint64
	// Skipped counts the frames a stall of the mixer's process left
	// unmixed (Stats.Skipped, over all mixers): each listener's stream
	// has a hole of that many packets there.
	Skipped uint64
}

// ReadTotals returns the counters.
func ReadTotals() Totals {
	return Totals{
		Frames: counters.frames.Load(), Encodes: counters.encodes.Load(), Concealed: counters.concealed.Load(),
		FEC: counters.fec.Load(), DecodeErrors: counters.decodeErrors.Load(), EncodeErrors: counters.encodeErrors.Load(),
		Skipped: counters.skipped.Load(),
	}
}

// minusIdleFrames: a mix-minus encoder unused this long (10 s) is freed.
const minusIdleFrames = 500

// encoder is one distinct mix: an Opus encoder and the limiter before it.
type encoder struct {
	enc       *gopus.Encoder
	lim       limiter
	pcm       [frameSamples]float32
	out       [maxOpus]byte
	n         int // bytes encoded this frame; 0 = nothing to send
	idle      int
	encodedAt uint64 // the frame a mix-minus was last encoded for
}

func newEncoder(cfg Config) (*encoder, error) {
	enc, err := gopus.NewEncoder(gopus.EncoderConfig{SampleRate: sampleRate, Channels: 1, Application: gopus.ApplicationVoIP})
	if err != nil {
		return nil, err
	}
	if err := enc.SetBitrate(cfg.Bitrate); err != nil {
		return nil, err
	}
	if err := enc.SetComplexity(cfg.Complexity); err != nil {
		return nil, err
	}
	// In-band FEC lets a listener's decoder recover a lost packet from the
	// next one: the mix is not retransmitted.
	enc.SetFEC(true)
	_ = enc.SetPacketLoss(5)
	return &encoder{enc: enc, lim: limiter{gain: 1}}, nil
}

// encode limits e.pcm and encodes it into e.out.
func (e *encoder) encode() {
	e.lim.process(e.pcm[:])
	n, err := e.enc.Encode(e.pcm[:], e.out[:])
	if err != nil || n <= 0 {
		counters.encodeErrors.Add(1)
		e.n = 0
		return
	}
	counters.encodes.Add(1)
	e.n, e.idle = n, 0
}

// workState is the mixer goroutine's scratch, reused every frame.
type workState struct {
	inputs  []*input
	outs    []*Output
	rank    []sfu.SpeakerLevel
	mixed   []*input
	frameID uint64
	sum     [frameSamples]float32
	shared  *encoder
	minus   map[string]*encoder // by owner, for speakers who listen
	// Inputs without RFC 6464 levels, ranked here (rank.go).
	det      *sfu.SpeakerDetector
	measured []sfu.SpeakerLevel
	measureN int
}

func (w *workState) init() {
	w.minus = map[string]*encoder{}
}

// statState measures the delay the mixer adds: from a packet's arrival to
// its frame leaving the mixer, encoder look-ahead excluded.
type statState struct {
	sum, max      atomic.Int64 // nanos: the sum of the per-frame averages, the largest
	frames        atomic.Uint64
	late, skipped atomic.Uint64
	dropouts      atomic.Uint64
}

// Stats describes a mixer.
type Stats struct {
	Inputs, Listeners int
	Frames            uint64        // frames with at least one voice
	DelayAvg          time.Duration // arrival to send, averaged over voices and frames
	DelayMax          time.Duration // the largest since the mixer started
	Lookahead         time.Duration // the encoder's algorithmic delay, on top
	// Late counts wake-ups more than a frame late (the mixer was starved
	// of CPU); Skipped the frames never mixed because of a longer stall:
	// the listeners' streams jump there.
	Late, Skipped uint64
	// Dropouts counts the times a mixed voice's packets stopped coming
	// for longer than the jitter buffer and concealment cover (a pause,
	// mute or DTX, or a publisher or network stalled): it leaves the mix
	// until it sends again, and when it was the only voice the listeners'
	// streams pause there (a new talkspurt, timestamps jump).
	Dropouts uint64
}

// Stats returns the mixer's figures.
func (m *Mixer) Stats() Stats {
	m.mu.Lock()
	s := Stats{Inputs: len(m.inputs), Listeners: len(m.listeners)}
	m.mu.Unlock()
	s.Frames = m.stat.frames.Load()
	s.Late, s.Skipped, s.Dropouts = m.stat.late.Load(), m.stat.skipped.Load(), m.stat.dropouts.Load()
	if s.Frames > 0 {
		s.DelayAvg = time.Duration(m.stat.sum.Load() / int64(s.Frames))
	}
	s.DelayMax = time.Duration(m.stat.max.Load())
	s.Lookahead = time.Duration(m.work.lookahead()) * time.Second / sampleRate
	return s
}

func (w *workState) lookahead() int {
	// 6.5 ms for Opus at 48 kHz in VoIP mode (4 ms CELT + 2.5 ms resampler
	// delay), the value libopus reports.
	return 312
}

// mixFrame mixes one 20 ms frame at RTP timestamp ts.
func (m *Mixer) mixFrame(ts uint32, now int64) {
	w := &m.work
	depth := m.cfg.jitterFrames()
	m.mu.Lock()
	w.inputs, w.outs = w.inputs[:0], w.outs[:0]
	for _, in := range m.inputs {
		w.inputs = append(w.inputs, in)
		p := m.pref(in.owner)
		g := p.gain
		if p.muted {
			g = 0
		}
		in.gain = g
	}
	for _, o := range m.listeners {
		w.outs = append(w.outs, o)
	}
	shared := m.shared
	m.mu.Unlock()

	// The loudest speakers, by the room's ranking; a participant's every
	// audio track counts as one speaker.
	if m.ranking != nil {
		w.rank = m.ranking(w.rank[:0])
	}
	w.mergeMeasured() // rank.go
	w.frameID++
	picked := 0
	for _, s := range w.rank {
		if picked >= m.cfg.Speakers {
			break
		}
		found := false
		for _, in := range w.inputs {
			if in.owner == s.ID && in.gain > 0 && !in.muted.Load() {
				found = true
				if !in.selected {
					in.selected = true
					if !in.measure { // a measured input is decoded all along
						in.reset() // a fresh decoder and buffer for a voice entering the mix
					}
				}
				in.marked = true
			}
		}
		if found {
			picked++
		}
	}
	w.mixed = w.mixed[:0]
	for _, in := range w.inputs {
		if in.measure && in.gain > 0 && !in.muted.Load() {
			// Decoded every frame to measure its level; mixed if ranked.
			played := in.frame(now, depth)
			in.observeLevel(played)
			if in.marked && played {
				w.mixed = append(w.mixed, in)
			}
			in.selected, in.marked = in.marked, false
			continue
		}
		if !in.marked {
			in.selected = false
			in.drain(depth)
			continue
		}
		in.marked = false
		if in.frame(now, depth) {
			w.mixed = append(w.mixed, in)
		}
	}
	for _, in := range w.inputs {
		if in.stopped {
			in.stopped = false
			m.stat.dropouts.Add(1)
		}
	}
	m.rankMeasured(now)
	if len(w.mixed) == 0 {
		for _, o := range w.outs {
			o.silent()
		}
		if shared != nil {
			shared.silent()
		}
		m.idleEncoders()
		return
	}
	counters.frames.Add(1)
	clear(w.sum[:])
	for _, in := range w.mixed {
		g := in.gain
		for i, v := range in.pcm[:frameSamples] {
			w.sum[i] += g * v
		}
	}

	// Encode each distinct mix once: the shared one if anyone hears it,
	// and a mix-minus for each mixed speaker who listens.
	needShared := shared != nil && len(*shared.sinks.Load()) > 0
	for _, o := range w.outs {
		if !w.isMixed(o.listener) {
			needShared = true
		} else {
			m.encodeMinus(o.listener)
		}
	}
	if needShared {
		if w.shared == nil {
			var err error
			if w.shared, err = newEncoder(m.cfg); err != nil {
				m.log.Error("mixer: opus encoder", "err", err)
				return
			}
		}
		w.shared.pcm = w.sum
		w.shared.encode()
	}
	m.idleEncoders()

	sent := clock.Nanos()
	for _, o := range w.outs {
		e := w.shared
		if w.isMixed(o.listener) {
			e = w.minus[o.listener]
		}
		if e == nil || e.n == 0 {
			o.silent()
			continue
		}
		o.send(e.out[:e.n], ts, now)
	}
	if needShared && shared != nil && w.shared.n > 0 {
		shared.send(w.shared.out[:w.shared.n], ts, now)
	}
	m.observeDelay(sent)
}

// isMixed reports whether a participant's voice is in this frame's mix.
func (w *workState) isMixed(owner string) bool {
	for _, in := range w.mixed {
		if in.owner == owner {
			return true
		}
	}
	return false
}

// encodeMinus encodes the mix without owner's voice, once per frame; with
// no other voice there is nothing to send (n = 0).
func (m *Mixer) encodeMinus(owner string) {
	w := &m.work
	e := w.minus[owner]
	others := false
	for _, in := range w.mixed {
		if in.owner != owner {
			others = true
			break
		}
	}
	if e == nil {
		if !others {
			return
		}
		var err error
		if e, err = newEncoder(m.cfg); err != nil {
			m.log.Error("mixer: opus encoder", "err", err)
			return
		}
		w.minus[owner] = e
	}
	e.encodedAt, e.idle = w.frameID, 0
	if !others {
		e.n = 0
		return
	}
	e.pcm = w.sum
	for _, in := range w.mixed {
		if in.owner != owner {
			continue
		}
		g := in.gain
		for i, v := range in.pcm[:frameSamples] {
			e.pcm[i] -= g * v
		}
	}
	e.encode()
}

// idleEncoders ages the mix-minus encoders not used this frame and frees
// those idle for long.
func (m *Mixer) idleEncoders() {
	w := &m.work
	for owner, e := range w.minus {
		if e.encodedAt != w.frameID {
			e.n = 0
			if e.idle++; e.idle > minusIdleFrames {
				delete(w.minus, owner)
			}
		}
	}
}

// observeDelay records the delay of this frame's packets, from their
// arrival to the frame's hand-off to the down tracks: the average over the
// voices mixed, summed for the average over frames, and the largest.
func (m *Mixer) observeDelay(sent int64) {
	var sum, n, worst int64
	for _, in := range m.work.mixed {
		if in.arrival > 0 {
			d := sent - in.arrival
			sum, n, worst = sum+d, n+1, max(worst, d)
		}
		in.arrival = 0
	}
	if n == 0 {
		return
	}
	m.stat.frames.Add(1)
	if worst > m.stat.max.Load() {
		m.stat.max.Store(worst)
	}
	m.stat.sum.Add(sum / n)
}
