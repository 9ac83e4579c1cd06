package cluster_test

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/starling-rtc/starling/client"
	"github.com/starling-rtc/starling/config"
	"github.com/starling-rtc/starling/internal/testutil"
	"github.com/starling-rtc/starling/recorder"
	"github.com/starling-rtc/starling/server"
)

// The tests of a recording handed from node to node (rechandover, reckill,
// reclease) share these steps: alice and bob publish the test media, one
// node records them, another goes on, and ffmpeg decodes both recordings.

// startRecordingCluster starts three nodes that record to disk, with a
// resume window (20 s) that outlasts a node's drain or death.
func startRecordingCluster(t *testing.T) []*server.Server {
	t.Helper()
	return startCluster(t, 3, func(c *config.Config) {
		c.Room.ResumeWindow = config.Duration(20 * time.Second)
		c.Recordings.Dir = t.TempDir()
	})
}

// publishPair waits until alice and bob see each other, then has both
// publish the test media until the test ends.
func publishPair(t *testing.T, alice, bob *client.Client) {
	t.Helper()
	seeEachOther(t, alice, bob)
	publishFiles(t, alice)
	publishFiles(t, bob)
}

// waitFourTracks waits until srv's recording id holds four tracks (alice's
// and bob's video and audio) of 30 frames or more each.
func waitFourTracks(t *testing.T, srv *server.Server, id string) {
	t.Helper()
	eventually(t, 60*time.Second, srv.Cluster().ID()+" records the four tracks, 30 frames each", func() bool {
		n := 0
		for _, tr := range recordingManifest(t, srv.Recorder(), id).Tracks {
			if tr.Frames >= 30 {
				n++
			}
		}
		return n == 4
	})
}

// checkBothDecode checks that ffmpeg decodes the first recording's files
// (first, of firstWho: alice's and bob's video and audio, 30 frames each)
// and the files of holder's recording id, stopped into dir: 30 frames of
// each of alice's and bob's tracks over their parts (secondWho names it).
func checkBothDecode(t *testing.T, first []string, firstWho string, holder *server.Server, id, dir, secondWho string) {
	t.Helper()
	if len(first) != 4 {
		t.Fatalf("%s files %v, want alice's and bob's video and audio", firstWho, first)
	}
	for _, f := range first {
		if got := testutil.DecodedFrames(t, f); got < 30 {
			t.Errorf("%s: ffmpeg decoded %d frames, want >= 30", f, got)
		}
	}
	decoded := map[string]int{}
	for _, tr := range recordingManifest(t, holder.Recorder(), id).Tracks {
		if tr.File == "" || tr.Frames == 0 {
			continue
		}
		got := testutil.DecodedFrames(t, filepath.Join(dir, tr.File))
		if got == 0 {
			t.Errorf("%s: ffmpeg decoded nothing", tr.File)
		}
		decoded[tr.ParticipantName+" "+tr.Kind] += got
	}
	for _, k := range []string{"alice audio", "alice video", "bob audio", "bob video"} {
		if decoded[k] < 30 {
			t.Errorf("%s: ffmpeg decoded %d frames of %s, want >= 30 (%v)", secondWho, decoded[k], k, decoded)
		}
	}
}

// runningRecording is the recording of srv's recorder with status
// "recording" in room, if any.
func runningRecording(srv *server.Server, room string) (recorder.Info, bool) {
	for _, in := range srv.Recorder().List(room) {
		if in.Status == "recording" {
			return in, true
		}
	}
	return recorder.Info{}, false
}

// waitBothRecorded waits until holder's recording id holds 30 frames of
// each of alice's and bob's audio and video, over their parts; it fails
// with the frames it holds and the tracks holder sees, so that a
// participant missing from the recording shows (one that did not resume,
// or whose tracks the recording did not take).
func waitBothRecorded(t *testing.T, holder *server.Server, room, id string, d time.Duration) {
	t.Helper()
	frames := map[string]int{}
	if testutil.Poll(d, func() bool {
		clear(frames)
		for _, tr := range recordingManifest(t, holder.Recorder(), id).Tracks {
			frames[tr.ParticipantName+" "+tr.Kind] += tr.Frames
		}
		return frames["alice audio"] >= 30 && frames["alice video"] >= 30 && frames["bob audio"] >= 30 && frames["bob video"] >= 30
	}) {
		return
	}
	var seen []string
	if rm := holder.Rooms().Room(room); rm != nil {
		for _, o := range rm.ObservedTracks() {
			seen = append(seen, fmt.Sprintf("%s %s %s node=%q", o.ParticipantName, o.Track.Kind, o.Track.ID, o.Node))
		}
	}
	t.Fatalf("after %s %s's recording %s holds %v frames (want 30 of each of alice's and bob's tracks); its tracks: %v",
		d, holder.Cluster().ID(), id, frames, seen)
}
