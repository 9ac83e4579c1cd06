package mixer

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/starling-rtc/starling/internal/clock"
	"github.com/starling-rtc/starling/sfu"
)

// Ranking appends the room's active speakers, loudest first, to dst: the
// same ranking (RFC 6464 levels) the room's activeSpeakers notifications
// carry. The mixer mixes the first Config.Speakers of it.
type Ranking func(dst []sfu.SpeakerLevel) []sfu.SpeakerLevel

// Mixer mixes one room. Create it with New, feed it with AddInput, give
// each listener an Output with AddListener, Close it when nobody listens.
type Mixer struct {
	cfg     Config
	id      string
	ssrc    uint32
	ranking Ranking
	log     *slog.Logger

	mu        sync.Mutex
	inputs    map[string]*input    // by track id
	listeners map[string]*Output   // by participant id
	prefs     map[string]ownerPref // admin settings by participant id
	shared    *Output              // the shared mix as a source for a recorder; nil until asked
	closed    bool

	quit chan struct{}
	done chan struct{}

	// Owned by the mixer goroutine.
	work workState
	stat statState
}

// ownerPref is an admin's setting for one participant's voice in the mix.
type ownerPref struct {
	gain  float32 // linear; 1 = unchanged
	muted bool    // left out of the mix
}

// New starts a room's mixer; id is the mix track's id.
func New(cfg Config, id string, ranking Ranking, log *slog.Logger) *Mixer {
	m := newMixer(cfg, id, ranking, log)
	go m.run()
	return m
}

// newMixer makes a mixer without its goroutine (benchmarks drive mixFrame).
func newMixer(cfg Config, id string, ranking Ranking, log *slog.Logger) *Mixer {
	if log == nil {
		log = slog.Default()
	}
	m := &Mixer{
		cfg: cfg.withDefaults(), id: id, ssrc: randUint32(), ranking: ranking, log: log,
		inputs: map[string]*input{}, listeners: map[string]*Output{}, prefs: map[string]ownerPref{},
		quit: make(chan struct{}), done: make(chan struct{}),
	}
	m.work.init()
	return m
}

// ID is the mix track's id.
func (m *Mixer) ID() string { return m.id }

// Config is the configuration in effect (defaults filled in).
func (m *Mixer) Config() Config { return m.cfg }

// AddInput mixes an audio track (owned by participant owner) when it is
// among the loudest: the mixer becomes a sink of src.
func (m *Mixer) AddInput(trackID, owner string, src sfu.Source, muted bool) error {
	in, err := newInput(trackID, owner, src)
	if err != nil {
		return err
	}
	in.muted.Store(muted)
	if lv, ok := src.(interface{ SendsAudioLevels() bool }); ok && !lv.SendsAudioLevels() {
		in.measure = true // rank.go
	}
	m.mu.Lock()
	if m.closed || m.inputs[trackID] != nil {
		m.mu.Unlock()
		return nil
	}
	m.inputs[trackID] = in
	m.mu.Unlock()
	src.AddSink(in)
	return nil
}

// RemoveInput stops mixing a track: its voice leaves the mix at the next frame.
func (m *Mixer) RemoveInput(trackID string) {
	m.mu.Lock()
	in := m.inputs[trackID]
	delete(m.inputs, trackID)
	m.mu.Unlock()
	if in != nil {
		in.src.RemoveSink(in)
		in.Close()
	}
}

// SetInputMuted follows the publisher's mute: a muted input is skipped
// before anything is copied.
func (m *Mixer) SetInputMuted(trackID string, muted bool) {
	m.mu.Lock()
	in := m.inputs[trackID]
	m.mu.Unlock()
	if in != nil {
		in.muted.Store(muted)
	}
}

// ErrBadGain is returned for a gain outside 0..4.
var ErrBadGain = errors.New("gain must be between 0 and 4")

// SetGain sets a participant's voice level in the mix (linear, 1 =
// unchanged, 0..4).
func (m *Mixer) SetGain(participant string, gain float64) error {
	if gain < 0 || gain > 4 || gain != gain {
		return ErrBadGain
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	p := m.pref(participant)
	p.gain = float32(gain)
	m.prefs[participant] = p
	return nil
}

// SetMuted leaves a participant out of the mix (or back in) without
// muting its track for those who receive it individually.
func (m *Mixer) SetMuted(participant string, muted bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	p := m.pref(participant)
	p.muted = muted
	m.prefs[participant] = p
}

// Pref reports a participant's gain and mute-in-mix.
func (m *Mixer) Pref(participant string) (gain float64, muted bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	p := m.pref(participant)
	return float64(p.gain), p.muted
}

// pref is a participant's setting or the default; m.mu held.
func (m *Mixer) pref(participant string) ownerPref {
	if p, ok := m.prefs[participant]; ok {
		return p
	}
	return ownerPref{gain: 1}
}

// Forget drops a participant's settings (it left the room).
func (m *Mixer) Forget(participant string) {
	m.mu.Lock()
	delete(m.prefs, participant)
	m.mu.Unlock()
}

// AddListener makes (or returns) a participant's Output: the shared mix,
// or its mix-minus while its own voice is mixed.
func (m *Mixer) AddListener(participant string) *Output {
	m.mu.Lock()
	defer m.mu.Unlock()
	if o := m.listeners[participant]; o != nil {
		return o
	}
	o := newOutput(m, participant)
	m.listeners[participant] = o
	return o
}

// RemoveListener stops a participant's mix.
func (m *Mixer) RemoveListener(participant string) {
	m.mu.Lock()
	o := m.listeners[participant]
	delete(m.listeners, participant)
	m.mu.Unlock()
	if o != nil {
		o.close()
	}
}

// Listeners counts the outputs.
func (m *Mixer) Listeners() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.listeners)
}

// Shared is the shared mix (every mixed voice) as a source, for a recorder.
func (m *Mixer) Shared() *Output {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.shared == nil {
		m.shared = newOutput(m, "")
	}
	return m.shared
}

// Close stops mixing and detaches from every input.
func (m *Mixer) Close() {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return
	}
	m.closed = true
	ins := make([]*input, 0, len(m.inputs))
	for _, in := range m.inputs {
		ins = append(ins, in)
	}
	clear(m.inputs)
	outs := make([]*Output, 0, len(m.listeners)+1)
	for _, o := range m.listeners {
		outs = append(outs, o)
	}
	if m.shared != nil {
		outs = append(outs, m.shared)
	}
	m.mu.Unlock()
	close(m.quit)
	<-m.done
	for _, in := range ins {
		in.src.RemoveSink(in)
		in.Close()
	}
	for _, o := range outs {
		o.close()
	}
}

// maxCatchUp is how many missed frames a late wake-up still mixes: the
// inputs buffered them meanwhile (up to 320 ms), so the mix stays
// continuous through a short stall; a longer one is skipped.
const maxCatchUp = 8

// run mixes a frame every 20 ms on the wall clock; a late wake-up mixes the
// frames it missed (up to maxCatchUp), so the timestamps follow real time.
func (m *Mixer) run() {
	defer close(m.done)
	t := time.NewTicker(frameDuration)
	defer t.Stop()
	start := time.Now()
	var frame int64
	for {
		select {
		case <-m.quit:
			return
		case <-t.C:
		}
		due := int64(time.Since(start) / frameDuration)
		if due-frame > 1 {
			m.stat.late.Add(1) // starved: a stall, or mixing slower than real time
		}
		if due-frame > maxCatchUp {
			m.stat.skipped.Add(uint64(due - frame - maxCatchUp))
			counters.skipped.Add(uint64(due - frame - maxCatchUp))
			frame = due - maxCatchUp
		}
		for ; frame < due; frame++ {
			m.mixFrame(uint32(frame*frameSamples), clock.Nanos())
		}
	}
}

func randUint32() uint32 {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return binary.BigEndian.Uint32(b[:])
}
