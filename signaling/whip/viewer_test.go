package whip

import (
	"reflect"
	"sort"
	"testing"
	"time"

	"github.com/starling-rtc/starling/protocol"
)

func tr(id, pid, kind, source string) protocol.Track {
	return protocol.Track{ID: id, ParticipantID: pid, Kind: kind, Source: source}
}

func keys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// The viewer's choice: ?track=, ?participant= (id, else latest by name),
// else the loudest publisher held for speakerHold, else the earliest
// publisher; cameras and microphones first, as many as the offer has
// sections.
func TestViewerChoice(t *testing.T) {
	room := []protocol.Participant{ // sorted by join time, as Room.Participants
		{ID: "ME", Name: "viewer"},
		{ID: "P1", Name: "host", Tracks: []protocol.Track{tr("T1s", "P1", "video", protocol.SourceScreen), tr("T1v", "P1", "video", protocol.SourceCamera), tr("T1a", "P1", "audio", protocol.SourceMicrophone)}},
		{ID: "P2", Name: "guest", Tracks: []protocol.Track{tr("T2v", "P2", "video", protocol.SourceCamera), tr("T2a", "P2", "audio", protocol.SourceMicrophone)}},
		{ID: "P3", Name: "guest", Tracks: []protocol.Track{tr("T3a", "P3", "audio", protocol.SourceMicrophone)}},
		{ID: "P4", Name: "lurker"},
	}
	cases := []struct {
		name         string
		v            *viewer
		audio, video int
		want         []string
	}{
		{"earliest publisher, camera before screen", &viewer{}, 1, 1, []string{"T1a", "T1v"}},
		{"two video sections take the screen too", &viewer{}, 1, 2, []string{"T1a", "T1s", "T1v"}},
		{"video only offer", &viewer{}, 0, 1, []string{"T1v"}},
		{"by participant id", &viewer{participant: "P2"}, 1, 1, []string{"T2a", "T2v"}},
		{"by name: the latest with it", &viewer{participant: "guest"}, 1, 1, []string{"T3a"}},
		{"by track ids", &viewer{tracks: []string{"T2v", "T1a", "gone"}}, 1, 1, []string{"T1a", "T2v"}},
		{"the loudest publisher", &viewer{speaker: "P2"}, 1, 1, []string{"T2a", "T2v"}},
		{"a speaker who publishes nothing is not followed", &viewer{speaker: "P4"}, 1, 1, []string{"T1a", "T1v"}},
		{"held on the current one within speakerHold", &viewer{speaker: "P2", following: "P1", lastSwitch: time.Now()}, 1, 1, []string{"T1a", "T1v"}},
		{"switches after speakerHold", &viewer{speaker: "P2", following: "P1", lastSwitch: time.Now().Add(-speakerHold)}, 1, 1, []string{"T2a", "T2v"}},
		{"the followed one left: the earliest publisher", &viewer{following: "P9"}, 1, 1, []string{"T1a", "T1v"}},
	}
	for _, c := range cases {
		v := c.v
		v.wake = make(chan struct{}, 1)
		if got := keys(v.choose(room, "ME", c.audio, c.video)); !reflect.DeepEqual(got, c.want) {
			t.Errorf("%s: got %v, want %v", c.name, got, c.want)
		}
	}
	if got := keys((&viewer{wake: make(chan struct{}, 1)}).choose(room[:1], "ME", 1, 1)); len(got) != 0 {
		t.Errorf("nobody publishes: got %v", got)
	}
}
