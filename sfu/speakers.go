package sfu

import (
	"math"
	"sort"
	"sync/atomic"
	"time"

	"github.com/pion/webrtc/v4"
)

// Audio levels are RFC 6464 values: -dBov from 0 (loudest) to 127 (silence).
const (
	// SpeakerSilenceDB and quieter counts as silence; levels are clamped there
	// so that the smoothed level of a new speaker rises quickly.
	SpeakerSilenceDB = 80
	// speakerEnterDB: a smoothed level at least this loud (-40 dBov) makes a
	// participant an active speaker.
	speakerEnterDB = 40.0
	// speakerExitDB: an active speaker stops being one once quieter than
	// -48 dBov for speakerHold without a break. The gap between the two
	// thresholds is the hysteresis that keeps a level near one of them
	// from flickering; the hold keeps pauses between words from doing so.
	speakerExitDB = 48.0
	speakerHold   = time.Second
	// speakerSmoothing is the weight of a new tick's level in the moving
	// average: a 100 ms peak from silence moves it 80 -> 56 dB, not enough
	// to become active; 200 ms of speech (80 -> 56 -> 41.6 -> ...) is.
	speakerSmoothing = 0.4
	// speakerRankMargin: the loudest speaker keeps first place until another
	// is louder by this much (levels 0..1), so two similar voices do not
	// swap places at every tick.
	speakerRankMargin = 0.05
)

// SpeakerLevel is one active speaker: a participant and its level, 0..1.
type SpeakerLevel struct {
	ID    string
	Level float64
}

// LevelFromDB maps -dBov to the 0..1 level clients see: 0 at
// SpeakerSilenceDB and below, 1 at 0 dBov, linear in dB.
func LevelFromDB(db float64) float64 {
	return math.Max(0, math.Min(1, (SpeakerSilenceDB-db)/SpeakerSilenceDB))
}

type speakerState struct {
	db         float64 // smoothed -dBov
	active     bool
	quiet      bool  // active, and quieter than speakerExitDB since quietSince
	quietSince int64 // nanos
	ticked     bool  // observed in the current tick
}

// SpeakerDetector turns per-participant audio levels, sampled at a steady
// tick (about 100 ms), into a ranking of active speakers. Not safe for
// concurrent use.
type SpeakerDetector struct {
	peers map[string]*speakerState
	first string // who ranked first last time
}

// NewSpeakerDetector makes an empty detector.
func NewSpeakerDetector() *SpeakerDetector {
	return &SpeakerDetector{peers: map[string]*speakerState{}}
}

// Observe feeds one tick's level (-dBov, averaged over the tick) of a
// participant; a participant not observed in a tick is treated as silent.
// now is a clock in nanoseconds, passed in for testability.
func (d *SpeakerDetector) Observe(id string, db float64, now int64) {
	d.observe(id, db, speakerSmoothing, now)
}

// SpeakerTick is the tick the detector is tuned for, and SpeakerPacket the
// audio one packet carries (Opus's usual 20 ms).
const (
	SpeakerTick   = 100 * time.Millisecond
	SpeakerPacket = 20 * time.Millisecond
)

// ObserveAudio is Observe for a tick's level averaged over packets audio
// packets: the level weighs as much as the audio it describes, not as a
// whole tick. On a busy machine packets are read in bursts, and a tick
// could hold only the two or three packets of a 100 ms click (the rest
// of the click and the silence after it in the next ticks): weighed as
// whole ticks, two such ticks made a click an active speaker. A tick of
// SpeakerTick/SpeakerPacket packets weighs what Observe's does.
func (d *SpeakerDetector) ObserveAudio(id string, db float64, packets uint32, now int64) {
	weight := float64(packets) * float64(SpeakerPacket) / float64(SpeakerTick)
	d.observe(id, db, 1-math.Pow(1-speakerSmoothing, weight), now)
}

func (d *SpeakerDetector) observe(id string, db, alpha float64, now int64) {
	s := d.peers[id]
	if s == nil {
		s = &speakerState{db: SpeakerSilenceDB}
		d.peers[id] = s
	}
	s.ticked = true
	db = math.Max(0, math.Min(SpeakerSilenceDB, db))
	s.db += alpha * (db - s.db)
	switch {
	case !s.active && s.db <= speakerEnterDB:
		s.active, s.quiet = true, false
	case s.active && s.db < speakerExitDB:
		s.quiet = false
	case s.active && !s.quiet:
		s.quiet, s.quietSince = true, now
	case s.active && now-s.quietSince >= int64(speakerHold):
		s.active, s.quiet = false, false
	}
}

// Hold counts a participant as observed in this tick without a level: its
// packets are late, not missing (see the room's speakers loop), so the tick
// is not taken for silence.
func (d *SpeakerDetector) Hold(id string) {
	if s := d.peers[id]; s != nil {
		s.ticked = true
	}
}

// Forget drops a participant (left, or no longer publishing audio).
func (d *SpeakerDetector) Forget(id string) { delete(d.peers, id) }

// Tick closes a tick: participants not observed in it are fed silence. It
// returns the active speakers, loudest first.
func (d *SpeakerDetector) Tick(now int64) []SpeakerLevel {
	for id, s := range d.peers {
		if !s.ticked {
			d.Observe(id, SpeakerSilenceDB, now)
		}
		s.ticked = false
	}
	var out []SpeakerLevel
	for id, s := range d.peers {
		if s.active {
			out = append(out, SpeakerLevel{ID: id, Level: LevelFromDB(s.db)})
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Level != out[j].Level {
			return out[i].Level > out[j].Level
		}
		return out[i].ID < out[j].ID
	})
	// The previous first keeps its place within the margin.
	for i := 1; i < len(out); i++ {
		if out[i].ID == d.first && out[0].Level-out[i].Level < speakerRankMargin {
			first := out[i]
			copy(out[1:i+1], out[0:i])
			out[0] = first
			break
		}
	}
	d.first = ""
	if len(out) > 0 {
		d.first = out[0].ID
	}
	return out
}

// audioLevels accumulates a receiver's RFC 6464 levels between reads,
// without locks or allocation: the read goroutine adds, the speakers
// detector takes.
type audioLevels struct {
	sum     atomic.Uint64 // of -dBov, clamped at SpeakerSilenceDB
	packets atomic.Uint32
}

// add records the level in an audio level extension element (nil = none).
func (a *audioLevels) add(ext []byte) {
	if len(ext) == 0 {
		return
	}
	a.sum.Add(uint64(min(ext[0]&0x7f, SpeakerSilenceDB)))
	a.packets.Add(1)
}

// TakeAudioLevel returns the average level (-dBov, at most
// SpeakerSilenceDB) of the packets that carried one since the last call,
// and how many did. With no packets (not sending, DTX, no extension) the
// level is SpeakerSilenceDB. The average is taken in dB, not in power: a
// 20 ms click at 0 dBov in 100 ms of silence averages to -64 dBov, not -7,
// so short peaks stay short.
func (r *Receiver) TakeAudioLevel() (db float64, packets uint32) { return r.level.take() }

func (a *audioLevels) take() (db float64, packets uint32) {
	// An add racing with this call may have its level counted in this
	// read and its packet in the next: off by one packet at most.
	packets = a.packets.Swap(0)
	sum := a.sum.Swap(0)
	if packets == 0 {
		return SpeakerSilenceDB, 0
	}
	return min(SpeakerSilenceDB, float64(sum)/float64(packets)), packets
}

// AudioLevelExtensionID is the negotiated id of the publisher's RFC 6464
// audio level extension (0: none, or no layer yet).
func (r *Receiver) AudioLevelExtensionID() uint8 {
	r.mu.Lock()
	defer r.mu.Unlock()
	if l := r.layer[0]; l != nil {
		return l.levelID
	}
	return 0
}

// audioLevelID finds the negotiated id of the audio level extension.
func audioLevelID(exts []webrtc.RTPHeaderExtensionParameter) uint8 {
	for _, e := range exts {
		if e.URI == audioLevelURI && e.ID > 0 && e.ID < 256 {
			return uint8(e.ID)
		}
	}
	return 0
}

// SendsAudioLevels reports whether the publisher negotiated the RFC 6464
// audio level extension; a mixer ranks a track without it by its own
// measurement of the decoded audio.
func (r *Receiver) SendsAudioLevels() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, l := range r.layer {
		if l != nil && l.levelID != 0 {
			return true
		}
	}
	return false
}
