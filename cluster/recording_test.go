package cluster_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/starling-rtc/starling/client"
	"github.com/starling-rtc/starling/config"
	"github.com/starling-rtc/starling/internal/testutil"
	"github.com/starling-rtc/starling/protocol"
	"github.com/starling-rtc/starling/recorder"
)

// publishFiles publishes the test media in a loop, in real time, until the
// test ends.
func publishFiles(t *testing.T, c *client.Client) []client.Published {
	t.Helper()
	ivf, ogg := testutil.TestMedia(t)
	video, audio := testutil.MediaTracks(t, "cam", "mic", "stream")
	pubs, err := c.Publish(ctxT(t, 15*time.Second),
		client.LocalTrack{Track: video, Source: protocol.SourceCamera, Name: "cam"},
		client.LocalTrack{Track: audio, Source: protocol.SourceMicrophone, Name: "mic"})
	if err != nil {
		t.Fatalf("publish: %v", err)
	}
	stop := make(chan struct{})
	wg := testutil.SendMedia(ivf, ogg, video, audio, stop)
	t.Cleanup(func() { close(stop); wg.Wait() })
	return pubs
}

func httpJSON(t testing.TB, method, url string, body, out any) int {
	t.Helper()
	return httpJSONAuth(t, method, url, "", body, out)
}

// httpJSONAuth is httpJSON with a bearer token ("" = none).
func httpJSONAuth(t testing.TB, method, url, bearer string, body, out any) int {
	t.Helper()
	var rd *bytes.Reader
	if body != nil {
		raw, _ := json.Marshal(body)
		rd = bytes.NewReader(raw)
	} else {
		rd = bytes.NewReader(nil)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	if out != nil {
		_ = json.NewDecoder(resp.Body).Decode(out)
	}
	return resp.StatusCode
}

// A room recording started through node A's API records the video and
// audio of a publisher on node B, and the room's mix: A imports the two
// tracks once for the recording and its mixer (nobody on A subscribes),
// and ffmpeg decodes the three files on A's disk.
func TestRecordingRemoteTracks(t *testing.T) {
	parallel(t)
	testutil.TestMedia(t) // skips before the cluster starts when ffmpeg is missing
	dirs := map[string]string{"n0": t.TempDir(), "n1": t.TempDir(), "n2": t.TempDir()}
	srvs := startCluster(t, 3, func(c *config.Config) { c.Recordings.Dir = dirs[c.Cluster.NodeID] })
	const roomName = "rec-remote"
	no := false
	watcher := join(t, srvs[0], roomName, "watcher", func(o *client.Options) { o.AutoSubscribe = &no })
	pub := join(t, srvs[1], roomName, "pub")
	seeEachOther(t, watcher, pub)
	publishFiles(t, pub)
	eventually(t, 15*time.Second, "n0 knows pub's two tracks", func() bool {
		r := srvs[0].Rooms().Room(roomName)
		if r == nil {
			return false
		}
		p := r.Participant(pub.ParticipantID())
		return p != nil && len(p.Info().Tracks) == 2
	})
	if s := srvs[0].Cluster().RelayStats(); s.Imports != 0 {
		t.Fatalf("n0 imports %d tracks before the recording, want 0 (nobody subscribes there)", s.Imports)
	}

	var info recorder.Info
	if code := httpJSON(t, "POST", srvs[0].BaseURL()+"/v1/rooms/"+roomName+"/recordings", map[string]any{"mix": true}, &info); code != http.StatusCreated {
		t.Fatalf("start the recording on n0: %d %+v", code, info)
	}
	if info.Node != "n0" {
		t.Errorf("the recording says it runs on %q, want n0 (the node asked)", info.Node)
	}
	eventually(t, 20*time.Second, "the recording on n0 holds pub's two tracks and the mix", func() bool {
		in, ok := srvs[0].Recorder().Get(info.ID)
		return ok && in.Tracks == 3
	})
	eventually(t, 30*time.Second, "n0 imported both tracks once", func() bool {
		return srvs[0].Cluster().RelayStats().Imports == 2
	})
	// Record a few seconds: about 110 packets a second cross to n0.
	base := srvs[0].Cluster().RelayStats().PacketsIn
	eventually(t, 60*time.Second, "500 relayed packets reach n0", func() bool {
		return srvs[0].Cluster().RelayStats().PacketsIn >= base+500
	})
	// A file is created on its first frame; the mixer's first frame can
	// come late under -race on a loaded machine (once: two track files and
	// no mix.webm at the stop).
	eventually(t, 60*time.Second, "the recording's three files (pub's two tracks and the mix) have frames", func() bool {
		in, ok := srvs[0].Recorder().Get(info.ID)
		return ok && len(in.Files) == 3
	})
	// Then 3 s more of relayed media (about 330 packets) before the stop:
	// stopped as soon as mix.webm appeared, the mix had 5 and 12 frames of
	// the 50 wanted in two loaded suite runs (session 24), its first frame
	// having come seconds after the tracks' files.
	base = srvs[0].Cluster().RelayStats().PacketsIn
	eventually(t, 60*time.Second, "330 more relayed packets reach n0 once the mix has a file", func() bool {
		return srvs[0].Cluster().RelayStats().PacketsIn >= base+330
	})
	var stopped recorder.Info
	if code := httpJSON(t, "DELETE", srvs[0].BaseURL()+"/v1/rooms/"+roomName+"/recordings/"+info.ID, nil, &stopped); code != http.StatusOK {
		t.Fatalf("stop: %d", code)
	}
	if len(stopped.Files) != 3 {
		t.Fatalf("the recording has files %v, want the video and the audio of pub and mix.webm", stopped.Files)
	}
	for _, f := range stopped.Files {
		if !strings.HasPrefix(f, dirs["n0"]) {
			t.Errorf("file %s is not in n0's recordings folder (%s)", f, dirs["n0"])
		}
		want := 50
		if filepath.Base(f) == "mix.webm" && mixUnderRace {
			want = 1 // the mixer is not real time under -race
		}
		if n := testutil.DecodedFrames(t, f); n < want {
			t.Errorf("%s: ffmpeg decoded %d frames, want >= %d", f, n, want)
		}
	}
	man := recordingManifest(t, srvs[0].Recorder(), info.ID)
	for _, tr := range man.Tracks {
		if tr.Source != protocol.SourceMix && tr.ParticipantID != pub.ParticipantID() {
			t.Errorf("recorded track %s of %s, want pub's (%s)", tr.ID, tr.ParticipantID, pub.ParticipantID())
		}
	}
	// The recording is on n0 alone.
	for _, s := range srvs[1:] {
		if l := s.Recorder().List(roomName); len(l) != 0 {
			t.Errorf("another node has recordings of the room: %+v", l)
		}
	}
}

func recordingManifest(t testing.TB, m *recorder.Manager, id string) *recorder.Manifest {
	t.Helper()
	in, ok := m.Get(id)
	if !ok {
		t.Fatalf("no recording %s", id)
	}
	raw, err := os.ReadFile(in.Manifest)
	if err != nil {
		return &recorder.Manifest{}
	}
	var man recorder.Manifest
	if err := json.Unmarshal(raw, &man); err != nil {
		return &recorder.Manifest{}
	}
	return &man
}
