package cluster_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/starling-rtc/starling/internal/testutil"
	"github.com/starling-rtc/starling/recorder"
)

// A room recording's node killed: another node of the room records it on
// as a recording that continues it, once the dead node is known dead
// (about 10 s, asserted under takeoverBound; 23 s with the lease alone).
// Killed in-process, n2's recorder goes on running: it stops its recording
// itself when it no longer hears the cluster, before the other node
// starts. Alice, who was on n2, resumes through n0 and is recorded there
// again; ffprobe decodes every file of both recordings.
func TestRecordingNodeKilled(t *testing.T) {
	parallelLongest(t)    // first: the test media's encoding (TestMedia) then runs beside the other tests
	testutil.TestMedia(t) // skips before the cluster starts when ffmpeg is missing
	const roomName = "rec-kill"
	srvs := startRecordingCluster(t)
	for _, s := range srvs {
		eventually(t, 20*time.Second, "every node lists 3 nodes", func() bool { return len(s.Cluster().Nodes()) == 3 })
	}
	alice := join(t, srvs[2], roomName, "alice", withNodes(srvs[0]))
	bob := join(t, srvs[0], roomName, "bob")
	publishPair(t, alice, bob)
	var first recorder.Info
	if code := httpJSON(t, "POST", srvs[2].BaseURL()+"/v1/rooms/"+roomName+"/recordings", map[string]any{}, &first); code != http.StatusCreated || first.Node != "n2" {
		t.Fatalf("start on n2: %d %+v", code, first)
	}
	waitFourTracks(t, srvs[2], first.ID)

	killed := time.Now()
	srvs[2].Abort()
	var second recorder.Info
	eventually(t, 60*time.Second, "n0 records the room, continuing n2's recording", func() bool {
		in, ok := runningRecording(srvs[0], roomName)
		second = in
		return ok
	})
	if second.Continues != first.ID {
		t.Fatalf("n0's recording %+v, want one that continues %s", second, first.ID)
	}
	gap := second.StartedAt.Sub(killed)
	t.Logf("n0 records the room %s after n2 was killed", gap.Round(100*time.Millisecond))
	if gap >= takeoverBound {
		t.Errorf("n0 recorded the room %s after the kill, want less than %s (n2 known dead, not its lease waited out)", gap.Round(100*time.Millisecond), takeoverBound)
	}
	eventually(t, 30*time.Second, "the killed node's recorder stops its recording", func() bool {
		in, ok := srvs[2].Recorder().Get(first.ID)
		return ok && in.Status != "recording"
	})
	lost, _ := srvs[2].Recorder().Get(first.ID)
	if lost.EndedAt == nil || !lost.EndedAt.Before(second.StartedAt) {
		t.Fatalf("two nodes recorded the room at once: n2's %+v, n0's started %s", lost, second.StartedAt.Format(time.StampMilli))
	}
	// alice resumes through n0: before n0 records the room, or after
	// (her tracks, recorded as n2's, are then handed over to n0).
	waitBothRecorded(t, srvs[0], roomName, second.ID, 60*time.Second)
	var stopped recorder.Info
	if code := httpJSON(t, "DELETE", srvs[1].BaseURL()+"/v1/rooms/"+roomName+"/recordings/"+second.ID, nil, &stopped); code != http.StatusOK {
		t.Fatalf("stop n0's recording through n1: %d", code)
	}
	checkBothDecode(t, lost.Files, "n2's", srvs[0], second.ID, stopped.Dir, "n0's recording")
}
