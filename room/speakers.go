package room

import (
	"math"
	"sort"
	"sync"
	"time"

	"github.com/pion/webrtc/v4"
	"github.com/starling-rtc/starling/internal/clock"
	"github.com/starling-rtc/starling/protocol"
	"github.com/starling-rtc/starling/sfu"
)

const (
	// speakersTick is how often a room samples its audio levels.
	speakersTick = 100 * time.Millisecond
	// speakersMinGap spaces activeSpeakers notifications: at most 5 a second.
	speakersMinGap = 200 * time.Millisecond
	// speakersLevelStep is how much a speaker's level must move since the
	// last notification to be worth a new one when the ranking is the same.
	speakersLevelStep = 0.1
)

// speakers is a room's active speaker detection (RFC 6464 audio levels
// read by each audio track's receiver). It runs on its own goroutine from
// the first audio track published until the room closes.
type speakers struct {
	once    sync.Once
	mu      sync.Mutex
	current []sfu.SpeakerLevel // latest ranking, loudest first
	remote  []sfu.SpeakerLevel // the other nodes' rankings, for the mixer (remotemedia.go)
}

// startSpeakers starts detection once; safe under r.mu.
func (r *Room) startSpeakers() {
	r.speakers.once.Do(func() { go r.runSpeakers() })
}

// ActiveSpeakers returns the room's active speakers, loudest first, as
// participant ids with levels 0..1. The first one is the active speaker the
// bandwidth allocator should favour: it keeps first place while another is
// louder by less than a margin, so this order may differ from the levels
// (the activeSpeakers notification is sorted by level). Safe from any
// goroutine.
func (r *Room) ActiveSpeakers() []sfu.SpeakerLevel {
	r.speakers.mu.Lock()
	defer r.speakers.mu.Unlock()
	return append([]sfu.SpeakerLevel(nil), r.speakers.current...)
}

// IsActiveSpeaker reports whether a participant is among the active speakers.
func (r *Room) IsActiveSpeaker(participantID string) bool {
	r.speakers.mu.Lock()
	defer r.speakers.mu.Unlock()
	for _, s := range r.speakers.current {
		if s.ID == participantID {
			return true
		}
	}
	return false
}

// tickLevel is a participant's level in one tick and the audio packets
// it was averaged over (0: silence for the whole tick, or late).
type tickLevel struct {
	db      float64
	packets uint32
	late    bool // no packet in this tick, but one within speakersLate: a burst to come, not silence
}

// louder reports whether l says more about the participant than o: a level
// over o's, packets over none, late over silent.
func (l tickLevel) louder(o tickLevel) bool {
	if (l.packets > 0) != (o.packets > 0) {
		return l.packets > 0
	}
	if l.packets == 0 {
		return l.late && !o.late
	}
	return l.db < o.db
}

// speakersLate: a live audio track with no packet in a tick but one this
// recently is read in bursts (a busy machine), not silent: the tick is not
// taken for silence (sfu.SpeakerDetector.Hold). Shorter than Opus DTX's
// 400 ms, so a sender in discontinuous transmission still reads as quiet.
const speakersLate = 300 * time.Millisecond

type levelSource struct {
	owner string
	recv  *sfu.Receiver
	muted bool
}

// runSpeakers samples every audio track's level each tick, feeds the
// detector per participant (its loudest audio track) and tells everyone in
// the room when the ranking changes. It ends once the room is closed.
func (r *Room) runSpeakers() {
	det := sfu.NewSpeakerDetector()
	tick := time.NewTicker(speakersTick)
	defer tick.Stop()
	var sent []protocol.Speaker
	var lastSent time.Time
	known := map[string]bool{}
	var srcs []levelSource
	for range tick.C {
		srcs = srcs[:0]
		r.mu.Lock()
		if r.closed {
			r.mu.Unlock()
			return
		}
		for _, t := range r.tracks {
			if t.kind != webrtc.RTPCodecTypeAudio {
				continue
			}
			t.mu.Lock()
			if t.receiver != nil {
				srcs = append(srcs, levelSource{owner: t.owner.id, recv: t.receiver, muted: t.info.Muted})
			}
			t.mu.Unlock()
		}
		r.mu.Unlock()

		now := time.Now()
		loudest := make(map[string]tickLevel, len(srcs))
		nowNanos := clock.Nanos()
		for _, s := range srcs {
			db, n := s.recv.TakeAudioLevel()
			l := tickLevel{db: db, packets: n}
			switch {
			case s.muted:
				l = tickLevel{db: sfu.SpeakerSilenceDB}
			case n == 0 && nowNanos-s.recv.PacketTime() < int64(speakersLate):
				l = tickLevel{db: sfu.SpeakerSilenceDB, late: true}
			case n == 0:
				l = tickLevel{db: sfu.SpeakerSilenceDB}
			}
			if old, ok := loudest[s.owner]; !ok || l.louder(old) {
				loudest[s.owner] = l
			}
		}
		for id := range known {
			if _, ok := loudest[id]; !ok {
				det.Forget(id) // left, or stopped publishing audio
				delete(known, id)
			}
		}
		for id, l := range loudest {
			known[id] = true
			switch {
			case l.late:
				det.Hold(id)
			case l.packets == 0:
				det.Observe(id, l.db, clock.Nanos()) // muted or gone quiet: a whole tick of silence
			default:
				det.ObserveAudio(id, l.db, l.packets, clock.Nanos())
			}
		}
		ranking := det.Tick(clock.Nanos())
		r.speakers.mu.Lock()
		r.speakers.current = ranking
		r.speakers.mu.Unlock()

		list := make([]protocol.Speaker, len(ranking))
		for i, s := range ranking {
			list[i] = protocol.Speaker{ParticipantID: s.ID, Level: math.Round(s.Level*100) / 100}
		}
		// Clients read the list as loudest first and see the levels: it
		// must agree with them. The detector's stickiness (the previous
		// first keeps its place within a margin) is for the bandwidth
		// allocator; here it only breaks ties between equal levels as sent.
		sort.SliceStable(list, func(i, j int) bool { return list[i].Level > list[j].Level })
		if !speakersChanged(sent, list) || now.Sub(lastSent) < speakersMinGap {
			continue
		}
		sent, lastSent = list, now
		r.mu.Lock()
		r.localSpk = list
		r.emit(Event{Type: EvSpeakers, Speakers: list})
		merged := r.mergedSpeakersLocked()
		for _, p := range r.participants {
			p.peer.Notify(protocol.NotifyActiveSpeakers, protocol.ActiveSpeakersParams{Speakers: merged})
		}
		r.mu.Unlock()
	}
}

// speakersChanged: a different ranking, or a level that moved enough.
func speakersChanged(old, cur []protocol.Speaker) bool {
	if len(old) != len(cur) {
		return true
	}
	for i := range cur {
		if old[i].ParticipantID != cur[i].ParticipantID || math.Abs(old[i].Level-cur[i].Level) >= speakersLevelStep {
			return true
		}
	}
	return false
}

// mergedSpeakersLocked is this node's ranking merged with the other nodes'
// (r.mu held); on a single node it is the local ranking itself.
func (r *Room) mergedSpeakersLocked() []protocol.Speaker {
	if len(r.remoteSpk) == 0 {
		return r.localSpk
	}
	out := append([]protocol.Speaker{}, r.localSpk...)
	for _, l := range r.remoteSpk {
		out = append(out, l...)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Level > out[j].Level })
	return out
}

// remoteSpeakers takes another node's ranking and tells the local
// participants the merged one.
func (r *Room) remoteSpeakers(node string, list []protocol.Speaker) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(list) == 0 {
		delete(r.remoteSpk, node)
	} else {
		r.remoteSpk[node] = list
	}
	r.syncRemoteSpeakersLocked()
	merged := r.mergedSpeakersLocked()
	if merged == nil {
		merged = []protocol.Speaker{}
	}
	for _, p := range r.participants {
		p.peer.Notify(protocol.NotifyActiveSpeakers, protocol.ActiveSpeakersParams{Speakers: merged})
	}
}
