package cluster_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/starling-rtc/starling/internal/testutil"
	"github.com/starling-rtc/starling/recorder"
)

// A recording started through the API on a node that drains (SIGTERM)
// goes on on another node of the room: the drained node's recording ends
// as finished, then a node with a part of the room records the room as a
// recording that continues it (never both at once); the new one records
// alice (moved off the drained node) and bob, and ffprobe decodes every
// file of both.
func TestDrainHandsRecordingOver(t *testing.T) {
	parallelLongest(t)    // first: the test media's encoding (TestMedia) then runs beside the other tests
	testutil.TestMedia(t) // skips before the cluster starts when ffmpeg is missing
	const roomName = "rec-drain"
	srvs := startRecordingCluster(t)
	alice := join(t, srvs[0], roomName, "alice", withNodes(srvs[1]))
	bob := join(t, srvs[1], roomName, "bob")
	publishPair(t, alice, bob)
	var first recorder.Info
	if code := httpJSON(t, "POST", srvs[0].BaseURL()+"/v1/rooms/"+roomName+"/recordings", map[string]any{}, &first); code != http.StatusCreated || first.Node != "n0" {
		t.Fatalf("start on n0: %d %+v", code, first)
	}
	waitFourTracks(t, srvs[0], first.ID)

	if left := srvs[0].Drain(ctxT(t, 30*time.Second)); left != 0 {
		var evs []string
		for _, e := range alice.Events() {
			evs = append(evs, e.Method)
		}
		t.Fatalf("%d participants still on the drained node; alice's client events: %v", left, evs)
	}
	ended, _ := srvs[0].Recorder().Get(first.ID)
	if ended.Status != "finished" || ended.EndedAt == nil {
		t.Fatalf("n0's recording after the drain: %+v, want finished", ended)
	}
	var second recorder.Info
	eventually(t, 30*time.Second, "a node of the room records it on, continuing n0's recording", func() bool {
		for _, s := range srvs[1:] {
			if in, ok := runningRecording(s, roomName); ok {
				second = in
				return true
			}
		}
		return false
	})
	if second.Continues != first.ID || (second.Node != "n1" && second.Node != "n2") || second.Auto {
		t.Fatalf("the new recording %+v, want an API recording on n1 or n2 that continues %s", second, first.ID)
	}
	if !ended.EndedAt.Before(second.StartedAt) {
		t.Fatalf("two nodes recorded the room at once: n0's ended %s, %s's started %s", ended.EndedAt.Format(time.StampMilli), second.Node, second.StartedAt.Format(time.StampMilli))
	}
	t.Logf("recording handed over from n0 to %s: %s between the end of one and the start of the other", second.Node, second.StartedAt.Sub(*ended.EndedAt).Round(time.Millisecond))
	if err := srvs[0].Shutdown(ctxT(t, 15*time.Second)); err != nil {
		t.Logf("n0 shutdown: %v", err)
	}
	holder := srvs[indexOfNode(srvs, second.Node)]
	waitBothRecorded(t, holder, roomName, second.ID, 60*time.Second)
	running := 0
	var all []string
	for _, s := range srvs[1:] {
		for _, in := range s.Recorder().List(roomName) {
			if in.Status == "recording" {
				running++
			}
			all = append(all, in.ID+" "+in.Status+" "+in.Error)
		}
	}
	if running != 1 {
		t.Fatalf("%d recordings of the room run on n1 and n2, want 1: %q", running, all)
	}
	var stopped recorder.Info
	if code := httpJSON(t, "DELETE", srvs[2].BaseURL()+"/v1/rooms/"+roomName+"/recordings/"+second.ID, nil, &stopped); code != http.StatusOK {
		t.Fatalf("stop the new recording through n2: %d", code)
	}
	checkBothDecode(t, ended.Files, "n0's", holder, second.ID, stopped.Dir, "the new recording")
}
