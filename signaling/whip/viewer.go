package whip

import (
	"net/http"
	"net/url"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/starling-rtc/starling/protocol"
)

// viewer decides what a WHEP session watches, and keeps deciding as the
// room changes: the tracks named by ?track=, else the participant named by
// ?participant= (id or name), else the main speaker: the loudest publisher
// (activeSpeakers), held at least speakerHold, falling back to the one
// followed so far, then to the earliest publisher. Of that participant it
// takes as many audio and video tracks as the client offered sections for,
// cameras and microphones first. When the participant re-publishes (or
// leaves and comes back under the same name), the new tracks replace the
// old in the same media sections: the client sees one continuous stream.
type viewer struct {
	s           *session
	participant string   // ?participant=
	tracks      []string // ?track=

	wake chan struct{}
	quit chan struct{}
	done chan struct{}
	once sync.Once

	mu         sync.Mutex
	speaker    string    // the loudest speaker last reported
	following  string    // participant id watched now
	lastSwitch time.Time // when following last changed
}

// speakerHold keeps a viewer on one speaker at least this long, so a
// cough elsewhere does not flip the picture.
const speakerHold = 2 * time.Second

// newViewer reads the query; a participant or track it names must exist.
func newViewer(s *session, q url.Values) (*viewer, *httpError) {
	v := &viewer{s: s, participant: strings.TrimSpace(q.Get("participant")),
		wake: make(chan struct{}, 1), quit: make(chan struct{}), done: make(chan struct{})}
	for _, t := range strings.Split(q.Get("track"), ",") {
		if t = strings.TrimSpace(t); t != "" {
			v.tracks = append(v.tracks, t)
		}
	}
	if len(v.tracks) > 16 {
		return nil, fail(http.StatusBadRequest, "at most 16 tracks in ?track=")
	}
	return v, nil
}

// check answers 404 when ?participant= or ?track= names nothing among
// infos, the participants of room rm.
func (v *viewer) check(rm string, infos []protocol.Participant) *httpError {
	if v.participant != "" && findParticipant(infos, v.participant, "") == nil {
		return fail(http.StatusNotFound, "no participant "+v.participant+" in room "+rm)
	}
	for _, id := range v.tracks {
		if findTrack(infos, id) == nil {
			return fail(http.StatusNotFound, "no track "+id+" in room "+rm)
		}
	}
	return nil
}

// notify hears the room's notifications; never blocks.
func (v *viewer) notify(method string, params any) {
	switch method {
	case protocol.NotifyActiveSpeakers:
		if p, ok := params.(protocol.ActiveSpeakersParams); ok && len(p.Speakers) > 0 {
			v.mu.Lock()
			v.speaker = p.Speakers[0].ParticipantID
			v.mu.Unlock()
		}
	case protocol.NotifyTrackPublished, protocol.NotifyTrackUnpublished,
		protocol.NotifyParticipantJoined, protocol.NotifyParticipantLeft:
	default:
		return
	}
	v.poke()
}

func (v *viewer) poke() {
	select {
	case v.wake <- struct{}{}:
	default:
	}
}

// start runs the viewer's goroutine and makes the first choice.
func (v *viewer) start() {
	go v.run()
	v.poke()
}

// stop ends the goroutine; idempotent, safe before start.
func (v *viewer) stop() { v.once.Do(func() { close(v.quit) }) }

func (v *viewer) run() {
	defer close(v.done)
	for {
		select {
		case <-v.quit:
			return
		case <-v.wake:
			v.reconcile()
		}
	}
}

// reconcile subscribes to what the viewer should watch now and drops the rest.
func (v *viewer) reconcile() {
	p := v.s.participant()
	if p == nil {
		return
	}
	audio, video := p.SubscriberSlots()
	want := v.choose(p.Room().Participants(), p.ID(), audio, video)
	have := map[string]bool{}
	for _, sub := range p.Subscriptions() {
		have[sub.TrackID] = true
	}
	var drop []string
	for id := range have {
		if !want[id] {
			drop = append(drop, id)
		}
	}
	if len(drop) > 0 {
		_ = p.Unsubscribe(drop) // a track unpublished meanwhile is gone already
	}
	for id := range want {
		if !have[id] {
			_ = p.Subscribe([]string{id}) // one by one: one vanished track must not cost the others
		}
	}
}

// choose returns the track ids to watch, with self the viewer's own
// participant id and audio, video the media sections its client offered.
func (v *viewer) choose(infos []protocol.Participant, self string, audio, video int) map[string]bool {
	want := map[string]bool{}
	if len(v.tracks) > 0 {
		for _, id := range v.tracks {
			if t := findTrack(infos, id); t != nil && t.ParticipantID != self {
				want[id] = true
			}
		}
		return want
	}
	target := v.target(infos, self)
	if target == nil {
		return want
	}
	tracks := append([]protocol.Track(nil), target.Tracks...)
	sort.Slice(tracks, func(i, j int) bool {
		if ri, rj := sourceRank(tracks[i].Source), sourceRank(tracks[j].Source); ri != rj {
			return ri < rj
		}
		return tracks[i].ID < tracks[j].ID
	})
	for _, t := range tracks {
		switch {
		case t.Kind == "audio" && audio > 0:
			audio--
		case t.Kind == "video" && video > 0:
			video--
		default:
			continue
		}
		want[t.ID] = true
	}
	return want
}

// target picks the participant to watch (see viewer).
func (v *viewer) target(infos []protocol.Participant, self string) *protocol.Participant {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.participant != "" {
		return findParticipant(infos, v.participant, self)
	}
	current := findParticipant(infos, v.following, self)
	if current != nil && len(current.Tracks) == 0 {
		current = nil
	}
	next := current
	if sp := findParticipant(infos, v.speaker, self); sp != nil && len(sp.Tracks) > 0 && sp != current {
		if current == nil || time.Since(v.lastSwitch) >= speakerHold {
			next = sp
		} else {
			time.AfterFunc(speakerHold-time.Since(v.lastSwitch), v.poke) // look again once the hold is over
		}
	}
	if next == nil {
		for i := range infos { // sorted by join time
			if infos[i].ID != self && len(infos[i].Tracks) > 0 {
				next = &infos[i]
				break
			}
		}
	}
	if next == nil {
		return nil
	}
	if next.ID != v.following {
		v.following, v.lastSwitch = next.ID, time.Now()
	}
	return next
}

// findParticipant finds a participant other than self by id, else by name
// (the latest to join with that name: a publisher that came back).
func findParticipant(infos []protocol.Participant, key, self string) *protocol.Participant {
	if key == "" {
		return nil
	}
	var byName *protocol.Participant
	for i := range infos {
		if infos[i].ID == self {
			continue
		}
		if infos[i].ID == key {
			return &infos[i]
		}
		if infos[i].Name == key {
			byName = &infos[i]
		}
	}
	return byName
}

func findTrack(infos []protocol.Participant, id string) *protocol.Track {
	for i := range infos {
		for j := range infos[i].Tracks {
			if infos[i].Tracks[j].ID == id {
				return &infos[i].Tracks[j]
			}
		}
	}
	return nil
}

// sourceRank orders tracks: camera and microphone before screen share.
func sourceRank(source string) int {
	switch source {
	case protocol.SourceCamera, protocol.SourceMicrophone:
		return 0
	case protocol.SourceScreen, protocol.SourceScreenAudio:
		return 1
	}
	return 2
}
