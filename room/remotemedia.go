package room

import (
	"slices"

	"github.com/pion/webrtc/v4"
	"github.com/starling-rtc/starling/sfu"
)

// Recordings and the audio mix consume tracks published on other nodes of
// a cluster like a local subscriber does: while a recording of the room
// runs here, every remote track is imported (once per track and node, the
// same import subscribers share); while the room mixes here, every remote
// audio track is. An import that becomes ready is handed to the mixer and
// to the observers that asked for remote tracks (RemoteObserver: the
// recorder), with PublishedTrack.Node set. Webhooks and the cluster's own
// observer never see remote tracks: their node reports them.

// RemoteObserver is an Observer that also wants the tracks published on
// other nodes, once their media is imported here (PublishedTrack.Node is
// their node). The room imports them while AcquireRemoteMedia is held.
type RemoteObserver interface {
	Observer
	ObservesRemoteTracks()
}

// remoteWant counts who wants remote media here without a subscriber;
// under Room.mu.
type remoteWant struct {
	all   int // recordings: every kind
	audio int // the mixer
}

// AcquireRemoteMedia makes the room import every track published on other
// nodes, now and later, until release is called (a recording of the room
// runs here). On a single node it costs nothing.
func (r *Room) AcquireRemoteMedia() (release func()) {
	r.mu.Lock()
	r.want.all++
	r.importWantedLocked()
	r.mu.Unlock()
	done := false
	return func() {
		r.mu.Lock()
		defer r.mu.Unlock()
		if !done {
			done = true
			r.want.all--
		}
	}
}

// keepForRecordingLocked: this node's part of the room has no participant
// left but records the room while others are in it on other nodes; it
// stays open (checked again after each empty timeout) so the recording
// goes on. r.mu held.
func (r *Room) keepForRecordingLocked() bool {
	return r.want.all > 0 && len(r.remotes) > 0
}

// wantsRemoteLocked: a consumer other than a subscriber wants t's media.
func (r *Room) wantsRemoteLocked(t *Track) bool {
	return t.owner.node != "" && (r.want.all > 0 || (r.want.audio > 0 && t.kind == webrtc.RTPCodecTypeAudio))
}

// importWantedLocked starts the import of every remote track that is
// wanted and not imported yet; r.mu held.
func (r *Room) importWantedLocked() {
	for _, t := range r.tracks {
		if r.wantsRemoteLocked(t) {
			t.awaitImport(nil)
		}
	}
}

// importReady: t's import is there (for a subscriber or for a consumer
// above); the mixer and the remote observers get it.
func (r *Room) importReady(t *Track) {
	r.mu.Lock()
	if r.closed || r.tracks[t.id] != t {
		r.mu.Unlock()
		return
	}
	r.mixInput(t)
	r.mu.Unlock()
	r.m.notifyPublished(r, t)
}

// trackSourceLocked is t's media for the mixer and observers: its receiver, or
// its import (nil while there is none). t.mu held.
func (t *Track) trackSourceLocked() sfu.Source {
	if t.receiver != nil {
		return t.receiver
	}
	return t.imp.src
}

// syncRemoteSpeakersLocked mirrors the other nodes' active speakers for the
// mixer's ranking (read on the mixer's goroutine, which must not take
// r.mu); r.mu held.
func (r *Room) syncRemoteSpeakersLocked() {
	var all []sfu.SpeakerLevel
	for _, l := range r.remoteSpk {
		for _, s := range l {
			all = append(all, sfu.SpeakerLevel{ID: s.ParticipantID, Level: s.Level})
		}
	}
	r.speakers.mu.Lock()
	r.speakers.remote = all
	r.speakers.mu.Unlock()
}

// appendActiveSpeakers is the mixer's ranking: this node's active
// speakers and the other nodes', loudest first (no allocation once dst
// has grown).
func (r *Room) appendActiveSpeakers(dst []sfu.SpeakerLevel) []sfu.SpeakerLevel {
	r.speakers.mu.Lock()
	defer r.speakers.mu.Unlock()
	dst = append(dst, r.speakers.current...)
	if len(r.speakers.remote) == 0 {
		return dst
	}
	n := len(dst) - len(r.speakers.current)
	dst = append(dst, r.speakers.remote...)
	slices.SortStableFunc(dst[n:], func(a, b sfu.SpeakerLevel) int {
		switch {
		case a.Level > b.Level:
			return -1
		case a.Level < b.Level:
			return 1
		}
		return 0
	})
	return dst
}

// remoteMixPref applies another node's admin setting of a voice in the
// mix (EvMixPref): every node mixes for its own listeners, so each needs
// it. A participant this node does not know is ignored.
func (r *Room) remoteMixPref(ev Event) {
	if ev.Gain == nil || *ev.Gain < 0 || *ev.Gain > 4 {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.participants[ev.ParticipantID] == nil && r.remotes[ev.ParticipantID] == nil {
		return
	}
	r.applyMixPrefLocked(ev.ParticipantID, mixPref{gain: *ev.Gain, muted: ev.Muted})
}

// forgetMixPrefLocked drops a remote participant's mix setting when it
// leaves, as leaveMix does for a local one; r.mu held.
func (r *Room) forgetMixPrefLocked(id string) {
	delete(r.mix.prefs, id)
	if r.mix.mx != nil {
		r.mix.mx.Forget(id)
	}
}
