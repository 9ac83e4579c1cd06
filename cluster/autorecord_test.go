package cluster_test

import (
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/starling-rtc/starling/client"
	"github.com/starling-rtc/starling/config"
	"github.com/starling-rtc/starling/internal/testutil"
	"github.com/starling-rtc/starling/recorder"
	"github.com/starling-rtc/starling/server"
)

// listRecordings lists a room's recordings through a node's API.
func listRecordings(t testing.TB, base, room string) []recorder.Info {
	t.Helper()
	var body struct {
		Recordings []recorder.Info `json:"recordings"`
	}
	if code := httpJSON(t, "GET", base+"/v1/rooms/"+room+"/recordings", nil, &body); code != http.StatusOK {
		t.Fatalf("list %s's recordings on %s: %d", room, base, code)
	}
	return body.Recordings
}

// Auto-record in a cluster records the room once: three participants
// join an auto-recorded room on three nodes at the same instant and each
// publishes video and audio; exactly one node records, every node lists
// that one recording, and it holds all six tracks, which ffmpeg decodes.
func TestAutoRecordOnceInCluster(t *testing.T) {
	parallelLongest(t)
	testutil.TestMedia(t) // skips before the cluster starts when ffmpeg is missing
	srvs := startCluster(t, 3, func(c *config.Config) {
		c.Recordings.Dir = t.TempDir()
		c.Recordings.AutoRecord = []string{"auto-*"}
	})
	for _, s := range srvs {
		eventually(t, 20*time.Second, "every node lists 3 nodes", func() bool { return len(s.Cluster().Nodes()) == 3 })
	}
	const roomName = "auto-class"
	pubs := make([]*client.Client, 3)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range srvs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			pubs[i] = join(t, srvs[i], roomName, "pub"+itoa(i))
		}()
	}
	close(start)
	wg.Wait()
	for _, p := range pubs {
		if p == nil {
			t.FailNow() // join reported why
		}
	}
	seeEachOther(t, pubs...)
	for _, p := range pubs {
		wg.Add(1)
		go func() { defer wg.Done(); publishFiles(t, p) }()
	}
	wg.Wait()

	var rec recorder.Info
	eventually(t, 60*time.Second, "one recording holds the six tracks of the three nodes", func() bool {
		l := listRecordings(t, srvs[0].BaseURL(), roomName)
		if len(l) != 1 {
			return false
		}
		rec = l[0]
		return rec.Status == "recording" && rec.Auto && rec.Tracks == 6
	})
	for i, s := range srvs {
		if l := listRecordings(t, s.BaseURL(), roomName); len(l) != 1 || l[0].ID != rec.ID {
			t.Errorf("n%d lists %+v, want the one recording %s", i, l, rec.ID)
		}
	}
	n := 0
	for _, s := range srvs {
		n += len(s.Recorder().List(roomName))
	}
	if n != 1 {
		t.Fatalf("the nodes run %d recordings of the room, want 1", n)
	}
	if !strings.Contains(rec.ID, "-"+rec.Node) {
		t.Errorf("recording id %s does not name its node %s", rec.ID, rec.Node)
	}

	// Record a little, then stop it through another node.
	holder := srvs[0]
	for _, s := range srvs {
		if s.Cluster().ID() == rec.Node {
			holder = s
		}
	}
	eventually(t, 60*time.Second, "every track recorded 60 frames", func() bool {
		man := recordingManifest(t, holder.Recorder(), rec.ID)
		if len(man.Tracks) != 6 {
			return false
		}
		for _, tr := range man.Tracks {
			if tr.Frames < 60 {
				return false
			}
		}
		return true
	})
	other := srvs[0]
	if other == holder {
		other = srvs[1]
	}
	var stopped recorder.Info
	if code := httpJSON(t, "DELETE", other.BaseURL()+"/v1/rooms/"+roomName+"/recordings/"+rec.ID, nil, &stopped); code != http.StatusOK {
		t.Fatalf("stop through another node: %d", code)
	}
	if len(stopped.Files) != 6 {
		t.Fatalf("files %v, want the video and audio of the three publishers", stopped.Files)
	}
	people := map[string]bool{}
	for _, tr := range recordingManifest(t, holder.Recorder(), rec.ID).Participants {
		people[tr.ID] = true
	}
	for i, p := range pubs {
		if !people[p.ParticipantID()] {
			t.Errorf("pub%d (on n%d) is not in the recording", i, i)
		}
	}
	for _, f := range stopped.Files {
		if got := testutil.DecodedFrames(t, f); got < 30 {
			t.Errorf("%s: ffmpeg decoded %d frames, want >= 30", f, got)
		}
	}
	// Stopped through the API, the room's claim stays marked stopped: an
	// API start on another node takes it.
	var again recorder.Info
	if code := httpJSON(t, "POST", other.BaseURL()+"/v1/rooms/"+roomName+"/recordings", map[string]any{}, &again); code != http.StatusCreated || again.Node != other.Cluster().ID() {
		t.Fatalf("a new start on %s after the stop: %d %+v", other.Cluster().ID(), code, again)
	}
	// 503 (a node did not answer the lookup: a loaded run) says try again,
	// as a client following Retry-After would.
	code := 0
	eventually(t, 60*time.Second, "an answer other than 503 to the stop through "+holder.Cluster().ID(), func() bool {
		code = httpJSON(t, "DELETE", holder.BaseURL()+"/v1/rooms/"+roomName+"/recordings/"+again.ID, nil, nil)
		return code != http.StatusServiceUnavailable
	})
	if code != http.StatusOK {
		t.Fatalf("stop the new recording through %s: %d", holder.Cluster().ID(), code)
	}
}

// Two room recording starts at the same instant on two nodes: one runs
// (201), the other answers 409 naming it; three rounds.
func TestRecordingSimultaneousStarts(t *testing.T) {
	parallel(t)
	srvs := startCluster(t, 3, func(c *config.Config) { c.Recordings.Dir = t.TempDir() })
	for _, s := range srvs {
		eventually(t, 20*time.Second, "every node lists 3 nodes", func() bool { return len(s.Cluster().Nodes()) == 3 })
	}
	const roomName = "rec-race"
	a := join(t, srvs[0], roomName, "a")
	b := join(t, srvs[1], roomName, "b")
	seeEachOther(t, a, b)
	for round := 0; round < 3; round++ {
		type result struct {
			code int
			body struct {
				recorder.Info
				Error     string         `json:"error"`
				Recording *recorder.Info `json:"recording"`
			}
		}
		var res [2]result
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i := range res {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				res[i].code = httpJSON(t, "POST", srvs[i].BaseURL()+"/v1/rooms/"+roomName+"/recordings", map[string]any{}, &res[i].body)
			}()
		}
		close(start)
		wg.Wait()
		win, lose := 0, 1
		if res[1].code == http.StatusCreated {
			win, lose = 1, 0
		}
		if res[win].code != http.StatusCreated || res[lose].code != http.StatusConflict {
			t.Fatalf("round %d: starts on n0 and n1 answered %d and %d, want one 201 and one 409", round, res[0].code, res[1].code)
		}
		id := res[win].body.ID
		if r := res[lose].body.Recording; r == nil || r.ID != id || !strings.Contains(res[lose].body.Error, id) {
			t.Fatalf("round %d: the 409 (%q, %+v) does not name the running recording %s", round, res[lose].body.Error, r, id)
		}
		running := 0
		for _, s := range srvs {
			for _, in := range s.Recorder().List(roomName) {
				if in.Status == "recording" {
					running++
				}
			}
		}
		if running != 1 {
			t.Fatalf("round %d: %d recordings run, want 1", round, running)
		}
		if l := listRecordings(t, srvs[2].BaseURL(), roomName); len(l) != round+1 {
			t.Fatalf("round %d: n2 lists %d recordings, want %d", round, len(l), round+1)
		}
		var stopped recorder.Info
		if code := httpJSON(t, "DELETE", srvs[2].BaseURL()+"/v1/rooms/"+roomName+"/recordings/"+id, nil, &stopped); code != http.StatusOK {
			t.Fatalf("round %d: stop: %d", round, code)
		}
	}
}

// When the node that auto-records a room dies, another node of the room
// takes the recording over once the dead node's claim lease is out: a new
// recording (its own folder on its own disk) of the whole room, once,
// naming the one it continues.
func TestAutoRecordTakeover(t *testing.T) {
	parallelLong(t) // 13-23 s (sched_test.go)
	srvs := startCluster(t, 3, func(c *config.Config) {
		c.Recordings.Dir = t.TempDir()
		c.Recordings.AutoRecord = []string{"auto-*"}
	})
	for _, s := range srvs {
		eventually(t, 20*time.Second, "every node lists 3 nodes", func() bool { return len(s.Cluster().Nodes()) == 3 })
	}
	const roomName = "auto-takeover"
	pubs := make([]*client.Client, 3)
	for i, s := range srvs {
		pubs[i] = join(t, s, roomName, "pub"+itoa(i))
	}
	seeEachOther(t, pubs...)
	for _, p := range pubs {
		publishMedia(t, p, true)
	}
	var first recorder.Info
	eventually(t, 60*time.Second, "one recording holds the six tracks", func() bool {
		l := listRecordings(t, srvs[0].BaseURL(), roomName)
		if len(l) != 1 {
			return false
		}
		first = l[0]
		return first.Status == "recording" && first.Tracks == 6
	})
	dead := -1
	for i, s := range srvs {
		if s.Cluster().ID() == first.Node {
			dead = i
		}
	}
	if dead < 0 {
		t.Fatalf("the recording's node %q is none of the cluster's", first.Node)
	}
	killed := time.Now()
	srvs[dead].Abort()
	var live []int
	for i := range srvs {
		if i != dead {
			live = append(live, i)
		}
	}
	var second recorder.Info
	eventually(t, 90*time.Second, "a live node records the room again, with the live nodes' four tracks", func() bool {
		for _, in := range listRecordings(t, srvs[live[0]].BaseURL(), roomName) {
			if in.Status == "recording" && in.ID != first.ID {
				second = in
				return in.Tracks >= 4
			}
		}
		return false
	})
	if second.Node == first.Node || !second.Auto || second.Continues != first.ID {
		t.Fatalf("the new recording %+v, want an auto recording on a live node that continues %s", second, first.ID)
	}
	gap := second.StartedAt.Sub(killed)
	t.Logf("%s records the room %s after %s was killed", second.Node, gap.Round(100*time.Millisecond), first.Node)
	if gap >= takeoverBound {
		t.Errorf("the room was recorded again %s after the kill, want less than %s (the dead node known dead, not its lease waited out)", gap.Round(100*time.Millisecond), takeoverBound)
	}
	running := 0
	for _, i := range live {
		for _, in := range srvs[i].Recorder().List(roomName) {
			if in.Status == "recording" {
				running++
			}
		}
	}
	if running != 1 {
		t.Fatalf("%d recordings run on the live nodes, want 1", running)
	}
	holder := srvs[indexOfNode(srvs, second.Node)]
	eventually(t, 30*time.Second, "the new recording's manifest lists the live nodes' publishers", func() bool {
		people := map[string]bool{}
		for _, part := range recordingManifest(t, holder.Recorder(), second.ID).Participants {
			people[part.ID] = true
		}
		return people[pubs[live[0]].ParticipantID()] && people[pubs[live[1]].ParticipantID()]
	})
}

func indexOfNode(srvs []*server.Server, id string) int {
	for i, s := range srvs {
		if s.Cluster().ID() == id {
			return i
		}
	}
	return 0
}
