package cluster_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/starling-rtc/starling/auth"
	"github.com/starling-rtc/starling/client"
	"github.com/starling-rtc/starling/config"
	"github.com/starling-rtc/starling/recorder"
	"github.com/starling-rtc/starling/webhook"
)

// recordToken is a token with the record grant for one room, as a
// participant allowed to record would hold.
func recordToken(t testing.TB, roomName string) string {
	t.Helper()
	tok, err := auth.Issue(testAPIKey, testAPISecret, auth.Claims{RegisteredClaims: jwt.RegisteredClaims{Subject: "recorder"},
		Grants: auth.Grants{Room: roomName, Record: true}}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// The recording API works from any node and a room is recorded once: a
// recording started on n0 (where the room has a part) runs there; n1
// answers 409 to a second start; n2, without a part of the room, lists it,
// reads it and stops it (forwarded to n0); a start on n2 runs on a node
// that has a part of the room and says which. Each recording's webhooks
// are sent once. A track recording runs on the track's node, whichever
// node is asked (checkTrackRecordingFromAnyNode).
func TestRecordingControlFromAnyNode(t *testing.T) {
	parallelLongest(t)
	var mu sync.Mutex
	counts := map[string]int{}
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var e webhook.Event
		if json.NewDecoder(r.Body).Decode(&e) == nil && e.Recording != nil {
			mu.Lock()
			counts[e.Event+" "+e.Recording.ID]++
			mu.Unlock()
		}
	}))
	t.Cleanup(hook.Close)
	srvs := startCluster(t, 3, func(c *config.Config) {
		withKeys(c)
		c.Webhook.URLs = []string{hook.URL}
		c.Recordings.Dir = t.TempDir()
	})
	const roomName = "rec-ctl"
	for _, s := range srvs {
		eventually(t, 20*time.Second, "every node lists 3 nodes", func() bool { return len(s.Cluster().Nodes()) == 3 })
	}
	no := false
	watcher := join(t, srvs[0], roomName, "watcher", token(t, "watcher", roomName), func(o *client.Options) { o.AutoSubscribe = &no })
	pub := join(t, srvs[1], roomName, "pub", token(t, "pub", roomName))
	seeEachOther(t, watcher, pub)
	media := publishMedia(t, pub, true)
	tok := recordToken(t, roomName)
	url := func(i int, rest string) string {
		return srvs[i].BaseURL() + "/v1/rooms/" + roomName + "/recordings" + rest
	}

	var first recorder.Info
	if code := httpJSONAuth(t, "POST", url(0, ""), tok, map[string]any{}, &first); code != http.StatusCreated || first.Node != "n0" {
		t.Fatalf("start on n0: %d, node %q", code, first.Node)
	}
	eventually(t, 20*time.Second, "the recording on n0 holds pub's two tracks (on n1)", func() bool {
		in, ok := srvs[0].Recorder().Get(first.ID)
		return ok && in.Tracks == 2
	})
	base := srvs[0].Cluster().RelayStats().PacketsIn
	eventually(t, 30*time.Second, "200 relayed packets reach n0", func() bool {
		return srvs[0].Cluster().RelayStats().PacketsIn >= base+200
	})
	var conflict struct {
		Error     string         `json:"error"`
		Recording *recorder.Info `json:"recording"`
	}
	if code := httpJSONAuth(t, "POST", url(1, ""), tok, map[string]any{}, &conflict); code != http.StatusConflict ||
		conflict.Recording == nil || conflict.Recording.ID != first.ID {
		t.Fatalf("a second start on n1: %d %+v, want 409 naming %s", code, conflict, first.ID)
	}
	var list struct {
		Recordings []recorder.Info `json:"recordings"`
	}
	if code := httpJSONAuth(t, "GET", url(2, ""), tok, nil, &list); code != http.StatusOK || len(list.Recordings) != 1 ||
		list.Recordings[0].ID != first.ID || list.Recordings[0].Node != "n0" {
		t.Fatalf("list on n2: %d %+v, want the one recording on n0", code, list)
	}
	var got recorder.Info
	if code := httpJSONAuth(t, "GET", url(1, "/"+first.ID), tok, nil, &got); code != http.StatusOK || got.Status != "recording" || got.Tracks != 2 {
		t.Fatalf("get on n1: %d %+v", code, got)
	}
	var stopped recorder.Info
	if code := httpJSONAuth(t, "DELETE", url(2, "/"+first.ID), tok, nil, &stopped); code != http.StatusOK || stopped.Status != "finished" || len(stopped.Files) != 2 {
		t.Fatalf("stop through n2: %d %+v", code, stopped)
	}
	if in, _ := srvs[0].Recorder().Get(first.ID); in.Status != "finished" {
		t.Fatalf("n0's recording is %q after the stop through n2", in.Status)
	}
	if code := httpJSONAuth(t, "GET", url(2, "/nope"), tok, nil, nil); code != http.StatusNotFound {
		t.Fatalf("an unknown recording through n2: %d, want 404", code)
	}

	// n2 has no part of the room: a node that has one records it.
	var second recorder.Info
	if code := httpJSONAuth(t, "POST", url(2, ""), tok, map[string]any{}, &second); code != http.StatusCreated || (second.Node != "n0" && second.Node != "n1") {
		t.Fatalf("start on n2: %d, node %q", code, second.Node)
	}
	eventually(t, 20*time.Second, "the second recording holds both tracks", func() bool {
		var in recorder.Info
		return httpJSONAuth(t, "GET", url(2, "/"+second.ID), tok, nil, &in) == http.StatusOK && in.Tracks == 2
	})
	if code := httpJSONAuth(t, "DELETE", url(1, ""), tok, nil, &list); code != http.StatusOK || len(list.Recordings) != 1 || list.Recordings[0].ID != second.ID {
		t.Fatalf("stop the room's recordings through n1: %d %+v", code, list)
	}

	checkTrackRecordingFromAnyNode(t, url, tok, media.published[1].ID)

	eventually(t, 20*time.Second, "recording_finished of both recordings is sent", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return counts[recorder.EventFinished+" "+first.ID] >= 1 && counts[recorder.EventFinished+" "+second.ID] >= 1
	})
	time.Sleep(time.Second) // a duplicate from another node would come within this
	mu.Lock()
	defer mu.Unlock()
	for _, id := range []string{first.ID, second.ID} {
		for _, ev := range []string{recorder.EventStarted, recorder.EventFinished} {
			if n := counts[ev+" "+id]; n != 1 {
				t.Errorf("%s of %s sent %d times, want once (all: %v)", ev, id, n, counts)
			}
		}
	}
}

// A recording outlives its node's own participants: n0 records a room whose
// only participant on n0 leaves; n0's part of the room stays open and keeps
// receiving pub's media from n1 for the recording, and the recording ends
// when the room ends (pub leaves).
func TestRecordingOutlivesLocalParticipants(t *testing.T) {
	parallel(t)
	srvs := startCluster(t, 2, func(c *config.Config) { c.Recordings.Dir = t.TempDir() })
	const roomName = "rec-outlives"
	no := false
	watcher := join(t, srvs[0], roomName, "watcher", func(o *client.Options) { o.AutoSubscribe = &no })
	pub := join(t, srvs[1], roomName, "pub")
	seeEachOther(t, watcher, pub)
	publishMedia(t, pub, true)
	var info recorder.Info
	if code := httpJSON(t, "POST", srvs[0].BaseURL()+"/v1/rooms/"+roomName+"/recordings", map[string]any{}, &info); code != http.StatusCreated {
		t.Fatalf("start on n0: %d", code)
	}
	eventually(t, 20*time.Second, "the recording holds pub's two tracks", func() bool {
		in, ok := srvs[0].Recorder().Get(info.ID)
		return ok && in.Tracks == 2
	})
	if err := watcher.Leave(ctxT(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "n0's part of the room has only pub's stub left", func() bool {
		r := srvs[0].Rooms().Room(roomName)
		if r == nil {
			return false
		}
		n, _ := r.Counts()
		return n == 1
	})
	// Several empty timeouts (300 ms) pass while 300 more packets arrive.
	base := srvs[0].Cluster().RelayStats().PacketsIn
	eventually(t, 30*time.Second, "300 more relayed packets reach n0", func() bool {
		return srvs[0].Cluster().RelayStats().PacketsIn >= base+300
	})
	if srvs[0].Rooms().Room(roomName) == nil {
		t.Fatal("n0 closed its part of the room while recording it")
	}
	if in, _ := srvs[0].Recorder().Get(info.ID); in.Status != "recording" {
		t.Fatalf("the recording is %q after n0's participant left, want recording", in.Status)
	}
	if err := pub.Leave(ctxT(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	eventually(t, 20*time.Second, "the recording ends with the room", func() bool {
		in, _ := srvs[0].Recorder().Get(info.ID)
		return in.Status == "finished" && srvs[0].Rooms().Room(roomName) == nil
	})
}

// checkTrackRecordingFromAnyNode: a recording of one track (pub's video,
// published on n1) started through n0, which has a part of the room but
// not the track, runs on n1 and writes the track's file; a second start of
// it through n2 answers 409 naming the first, as on one node; an unknown
// track through n2 (no part of the room) is 404 about the track, not the
// room. Before, n0 answered 201 and recorded nothing (a node records only
// its own tracks for a track recording: no file, "tracks": 0), a start
// through another node recorded the track a second time, and the unknown
// track was "room not found".
func checkTrackRecordingFromAnyNode(t *testing.T, url func(int, string) string, tok, video string) {
	t.Helper()
	var rec recorder.Info
	if code := httpJSONAuth(t, "POST", url(0, ""), tok, map[string]any{"track_id": video}, &rec); code != http.StatusCreated || rec.Node != "n1" {
		t.Fatalf("a track recording of n1's video through n0: %d, node %q, want 201 on n1", code, rec.Node)
	}
	var conflict struct {
		Recording *recorder.Info `json:"recording"`
	}
	if code := httpJSONAuth(t, "POST", url(2, ""), tok, map[string]any{"track_id": video}, &conflict); code != http.StatusConflict ||
		conflict.Recording == nil || conflict.Recording.ID != rec.ID {
		t.Fatalf("a second recording of the track through n2: %d %+v, want 409 naming %s", code, conflict.Recording, rec.ID)
	}
	var missing struct {
		Error string `json:"error"`
	}
	if code := httpJSONAuth(t, "POST", url(2, ""), tok, map[string]any{"track_id": "TR_nope"}, &missing); code != http.StatusNotFound ||
		!strings.Contains(missing.Error, "track") || strings.Contains(missing.Error, "room not found") {
		t.Fatalf("an unknown track through n2: %d %q, want 404 about the track", code, missing.Error)
	}
	eventually(t, 20*time.Second, "the track recording on n1 has the track's file", func() bool {
		var in recorder.Info
		return httpJSONAuth(t, "GET", url(0, "/"+rec.ID), tok, nil, &in) == http.StatusOK && in.Tracks == 1 && len(in.Files) == 1
	})
	var stopped recorder.Info
	if code := httpJSONAuth(t, "DELETE", url(0, "/"+rec.ID), tok, nil, &stopped); code != http.StatusOK || stopped.Status != "finished" || len(stopped.Files) != 1 {
		t.Fatalf("stop the track recording through n0: %d %+v", code, stopped)
	}
}
