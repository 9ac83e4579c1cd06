package room

import (
	"github.com/pion/webrtc/v4"
	"github.com/starling-rtc/starling/mixer"
	"github.com/starling-rtc/starling/protocol"
	"github.com/starling-rtc/starling/sfu"
)

// A room mixes its audio while at least one participant (or a recording)
// wants the mix: the mixer is made for the first and closed after the last.
// Participants with the mix on get one track with source "mix" instead of
// the others' audio tracks; their video and data are unchanged.

// roomMix is a room's mixer and who uses it; under Room.mu.
type roomMix struct {
	mx    *mixer.Mixer
	users int                // listeners and recordings holding the mixer
	prefs map[string]mixPref // admin settings by participant id, kept while the mixer comes and goes
}

type mixPref struct {
	gain  float64
	muted bool
}

// mixStreamID is the mix's msid stream: it belongs to no participant.
const mixStreamID = "mix"

// acquireMixer returns the room's mixer, starting it (with every audio
// track published so far as an input) if nobody used it yet.
func (r *Room) acquireMixer() *mixer.Mixer {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.mix.mx == nil {
		r.mix.mx = mixer.New(r.m.cfg.Mix, newID("TR_"), r.appendActiveSpeakers, r.m.log.With("room", r.name, "mixer", true))
		for id, pr := range r.mix.prefs {
			_ = r.mix.mx.SetGain(id, pr.gain)
			r.mix.mx.SetMuted(id, pr.muted)
		}
		for _, t := range r.tracks {
			r.mixInput(t)
		}
		r.startSpeakers()
	}
	r.mix.users++
	r.want.audio++
	r.importWantedLocked() // remote voices too (remotemedia.go)
	return r.mix.mx
}

// releaseMixer drops one user of the mixer (and a listener's output); the
// last one stops it.
func (r *Room) releaseMixer(listener string) {
	r.mu.Lock()
	mx := r.mix.mx
	if mx == nil {
		r.mu.Unlock()
		return
	}
	if listener != "" {
		mx.RemoveListener(listener)
	}
	r.mix.users--
	r.want.audio--
	if r.mix.users > 0 {
		r.mu.Unlock()
		return
	}
	r.mix.mx = nil
	r.mu.Unlock()
	mx.Close()
}

// AcquireMix makes the room mix (for a recording of the mix) until
// ReleaseMix; it returns the shared mix as a source and the mix's id.
func (r *Room) AcquireMix() (src sfu.Source, id string) {
	mx := r.acquireMixer()
	return mx.Shared(), mx.ID()
}

// ReleaseMix ends an AcquireMix.
func (r *Room) ReleaseMix() { r.releaseMixer("") }

// stopMixer closes the mixer of a room that closes, whoever still holds it
// (a recording releases it later: a no-op then). r.mu held; Close waits
// for the mixer's goroutine, which takes no room lock.
func (r *Room) stopMixer() {
	if mx := r.mix.mx; mx != nil {
		r.mix.mx, r.mix.users = nil, 0
		r.want.audio = 0
		go mx.Close()
	}
}

// Mixer is the room's mixer while the room mixes, else nil.
func (r *Room) Mixer() *mixer.Mixer {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.mix.mx
}

// mixInput adds an audio track to the mixer; r.mu held.
func (r *Room) mixInput(t *Track) {
	if r.mix.mx == nil || t.kind != webrtc.RTPCodecTypeAudio {
		return
	}
	t.mu.Lock()
	recv, muted := t.trackSourceLocked(), t.info.Muted // a remote track's import (remotemedia.go)
	t.mu.Unlock()
	if recv == nil {
		return
	}
	if err := r.mix.mx.AddInput(t.id, t.owner.id, recv, muted); err != nil {
		r.m.log.Warn("mixer input", "track", t.id, "err", err)
	}
}

// SetMixGain sets a participant's gain in the room's mix (linear 0..4, 1 =
// unchanged); it holds while the participant stays, mixing or not.
func (r *Room) SetMixGain(participantID string, gain float64) error {
	if gain < 0 || gain > 4 || gain != gain {
		return protocol.Errorf(protocol.CodeInvalidParams, "invalid params: gain must be between 0 and 4")
	}
	return r.setMixPref(participantID, func(p *mixPref) { p.gain = gain })
}

// SetMixMuted leaves a participant out of the room's mix (or puts it back);
// those who receive its track individually still hear it.
func (r *Room) SetMixMuted(participantID string, muted bool) error {
	return r.setMixPref(participantID, func(p *mixPref) { p.muted = muted })
}

// MixSetting is a participant's voice in the room's mix.
type MixSetting struct {
	Gain  float64
	Muted bool
}

// MixPrefs is a copy of the room's mix settings, by participant (the
// cluster writes them back into a room state store that lost them).
func (r *Room) MixPrefs() map[string]MixSetting {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[string]MixSetting, len(r.mix.prefs))
	for id, p := range r.mix.prefs {
		out[id] = MixSetting{Gain: p.gain, Muted: p.muted}
	}
	return out
}

// MixPref reports a participant's gain and mute-in-mix.
func (r *Room) MixPref(participantID string) (gain float64, muted bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	pr, ok := r.mix.prefs[participantID]
	if !ok {
		return 1, false
	}
	return pr.gain, pr.muted
}

func (r *Room) setMixPref(participantID string, f func(*mixPref)) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.participants[participantID] == nil && r.remotes[participantID] == nil {
		return protocol.Errorf(protocol.CodeNotFound, "no participant %q in room %q", participantID, r.name)
	}
	pr, ok := r.mix.prefs[participantID]
	if !ok {
		pr.gain = 1
	}
	f(&pr)
	r.applyMixPrefLocked(participantID, pr)
	gain := pr.gain
	r.emit(Event{Type: EvMixPref, ParticipantID: participantID, Gain: &gain, Muted: pr.muted}) // every node's mixer (remotemedia.go)
	return nil
}

// ApplyMixPref sets a participant's voice in the room's mix as the
// cluster stores it (cluster/mixprefs.go), without telling other nodes;
// also for a participant not known here yet (another node's, whose stub
// comes later): the setting waits for it. An invalid gain is ignored.
func (r *Room) ApplyMixPref(participantID string, gain float64, muted bool) {
	if gain < 0 || gain > 4 || gain != gain {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return
	}
	r.applyMixPrefLocked(participantID, mixPref{gain: gain, muted: muted})
}

// applyMixPrefLocked stores a participant's mix setting and gives it to
// the mixer; r.mu held.
func (r *Room) applyMixPrefLocked(participantID string, pr mixPref) {
	if r.mix.prefs == nil {
		r.mix.prefs = map[string]mixPref{}
	}
	r.mix.prefs[participantID] = pr
	if r.mix.mx != nil {
		_ = r.mix.mx.SetGain(participantID, pr.gain)
		r.mix.mx.SetMuted(participantID, pr.muted)
	}
}

// AudioMix reports whether the participant receives the mix.
func (p *Participant) AudioMix() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.audioMix
}

// SetAudioMix switches the participant to the room's mix (one audio track,
// source "mix") or back to the other participants' audio tracks.
func (p *Participant) SetAudioMix(on bool) error {
	if on && !p.Permissions().CanSubscribe {
		return protocol.Errorf(protocol.CodeForbidden, "not allowed to subscribe: the token lacks canSubscribe")
	}
	// Held through the mixer's acquire or release: a participant closing
	// meanwhile (leaveMix) waits, so a mixer is never acquired for a
	// participant that has already released it.
	p.mixMu.Lock()
	defer p.mixMu.Unlock()
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return protocol.Errorf(protocol.CodeConflict, "participant has left")
	}
	if p.audioMix == on {
		p.mu.Unlock()
		return nil
	}
	p.audioMix = on
	p.mu.Unlock()
	if on {
		mx := p.room.acquireMixer()
		out := mx.AddListener(p.id)
		p.loop.post(func() { p.loop.mixOn(out) })
		return nil
	}
	p.loop.post(func() { p.loop.mixOff() })
	p.room.releaseMixer(p.id)
	return nil
}

// leaveMix releases the mix of a participant that is closing.
func (p *Participant) leaveMix() {
	p.mixMu.Lock()
	defer p.mixMu.Unlock()
	p.mu.Lock()
	on := p.audioMix
	p.audioMix = false
	p.mu.Unlock()
	if on {
		p.room.releaseMixer(p.id)
	}
	r := p.room
	r.mu.Lock()
	delete(r.mix.prefs, p.id)
	if r.mix.mx != nil {
		r.mix.mx.Forget(p.id)
	}
	r.mu.Unlock()
}

// loopMix is the subscriber loop's side of the mix; loop goroutine only.
type loopMix struct {
	on   bool
	out  *mixer.Output
	down *sfu.DownTrack
	held map[string]*Track // audio tracks not received while the mix is on
}

// mixInfo is the mix track as announced to its listener.
func mixInfo(id string) protocol.Track {
	return protocol.Track{ID: id, Kind: "audio", Source: protocol.SourceMix, Name: "mix",
		Codec: mixer.OpusCodec.MimeType, Layers: []protocol.Layer{}}
}

// mixOn replaces the audio down tracks by one down track of the mix.
func (l *subscriberLoop) mixOn(out *mixer.Output) {
	if l.mix.on {
		return
	}
	if l.mix.held == nil {
		l.mix.held = map[string]*Track{}
	}
	l.mix.on, l.mix.out = true, out
	for id, t := range l.tracks {
		if t.kind == webrtc.RTPCodecTypeAudio {
			l.removeDownTrack(id)
			l.mix.held[id] = t
		}
	}
	d := sfu.NewDownTrack(out, mixStreamID)
	if err := l.p.sub.AddDownTrack(d); err != nil {
		l.p.log.Warn("cannot add the mix to the subscriber connection", "err", err)
		return
	}
	l.mix.down = d
	out.AddSink(d)
	l.p.peer.Notify(protocol.NotifyTrackPublished, protocol.TrackParams{Track: mixInfo(out.ID())})
	l.markDirty()
}

// mixOff removes the mix and brings back the audio tracks it replaced.
func (l *subscriberLoop) mixOff() {
	if !l.mix.on {
		return
	}
	l.mix.on = false
	if d := l.mix.down; d != nil {
		l.dropMixDown()
		if err := l.p.sub.RemoveDownTrack(d.ID()); err != nil {
			l.p.log.Debug("removing the mix from subscriber connection", "err", err)
		}
		l.p.peer.Notify(protocol.NotifyTrackUnpublished, protocol.TrackUnpublishedParams{TrackID: d.ID()})
		l.markDirty()
	}
	held := l.mix.held
	l.mix.held = map[string]*Track{}
	for _, t := range held {
		if l.p.room.track(t.id) == t {
			l.addDownTrack(t)
		}
	}
}

// dropMixDown detaches and closes the mix's down track.
func (l *subscriberLoop) dropMixDown() {
	if d := l.mix.down; d != nil {
		d.Source().RemoveSink(d)
		d.Close()
		l.mix.down = nil
	}
}

// holdForMix keeps an audio track aside while the mix is on; it reports
// whether it did.
func (l *subscriberLoop) holdForMix(t *Track) bool {
	if !l.mix.on || t.kind != webrtc.RTPCodecTypeAudio {
		return false
	}
	l.mix.held[t.id] = t
	return true
}
