package cluster_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/starling-rtc/starling/client"
	"github.com/starling-rtc/starling/config"
	"github.com/starling-rtc/starling/protocol"
	"github.com/starling-rtc/starling/server"
	"github.com/starling-rtc/starling/webhook"
)

// hookLog records a room's webhooks in the order they arrive.
type hookLog struct {
	mu     sync.Mutex
	events []webhook.Event
	url    string
}

func newHookLog(t *testing.T, roomName string) *hookLog {
	h := &hookLog{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var e webhook.Event
		if json.NewDecoder(r.Body).Decode(&e) == nil && e.Room.Name == roomName {
			h.mu.Lock()
			h.events = append(h.events, e)
			h.mu.Unlock()
		}
	}))
	t.Cleanup(srv.Close)
	h.url = srv.URL
	return h
}

// of lists the events of kind about participant id (and track, if not "").
func (h *hookLog) of(kind, id, track string) []webhook.Event {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []webhook.Event
	for _, e := range h.events {
		if e.Event == kind && e.Participant != nil && e.Participant.ID == id && (track == "" || e.Track != nil && e.Track.ID == track) {
			out = append(out, e)
		}
	}
	return out
}

// roomFinished counts the room_finished events of the room instance sid.
func (h *hookLog) roomFinished(sid string) (n int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, e := range h.events {
		if e.Event == webhook.RoomFinished && e.Room.SID == sid {
			n++
		}
	}
	return n
}

// reasons lists the reasons of the participant_left events about id.
func (h *hookLog) reasons(id string) []string {
	var out []string
	for _, e := range h.of(webhook.ParticipantLeave, id, "") {
		out = append(out, e.Reason)
	}
	return out
}

// index is the position of the first event of kind about id, -1 if none.
func (h *hookLog) index(kind, id string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	for i, e := range h.events {
		if e.Event == kind && e.Participant != nil && e.Participant.ID == id {
			return i
		}
	}
	return -1
}

// delivered waits until every webhook srv sent so far has arrived: its
// claims done, a participant joins there (the notifier delivers each
// endpoint's events in order) and its participant_joined arrives.
func (h *hookLog) delivered(t *testing.T, srv *server.Server, roomName, name string) *client.Client {
	t.Helper()
	eventually(t, 30*time.Second, srv.Cluster().ID()+"'s webhook claims are done", srv.Cluster().HooksIdle)
	c := join(t, srv, roomName, name, token(t, name, roomName))
	eventually(t, 30*time.Second, name+"'s participant_joined arrives", func() bool {
		return len(h.of(webhook.ParticipantJoin, c.ParticipantID(), "")) > 0
	})
	return c
}

// A killed node's tracks get their track_unpublished once for the
// cluster, from a live node that knew them (the stubs of the room's
// parts on n0 and n1 both do), before the participant's participant_left
// and with the fields its own node would have sent. Before, it was never
// sent (docs/cluster.md).
func TestWebhookTrackUnpublishedForKilledNodesTracks(t *testing.T) {
	parallel(t)
	const roomName = "dead-tracks"
	h := newHookLog(t, roomName)
	srvs := startCluster(t, 3, func(c *config.Config) {
		withKeys(c)
		c.Room.ResumeWindow = config.Duration(2 * time.Second)
		if c.Cluster.NodeID != "n2" { // a dead process sends none: in-process, n2 would
			c.Webhook.URLs = []string{h.url}
		}
	})
	eventually(t, 30*time.Second, "the room state store is on 3 current replicas", func() bool {
		ok, _ := srvs[0].Cluster().StoreReplicated(3)
		return ok
	})
	bob := join(t, srvs[0], roomName, "bob", token(t, "bob", roomName))
	carol := join(t, srvs[1], roomName, "carol", token(t, "carol", roomName))
	alice := join(t, srvs[2], roomName, "alice", token(t, "alice", roomName))
	seeEachOther(t, bob, carol, alice)
	aliceID := alice.ParticipantID()
	pub := publishMedia(t, alice, false)
	trackID := pub.published[0].Track.ID
	for _, c := range []*client.Client{bob, carol} {
		eventually(t, 20*time.Second, "alice's track reaches bob and carol", func() bool { return seesTrack(c, trackID) })
	}

	srvs[2].Abort()
	eventually(t, 40*time.Second, "participant_left is sent for alice", func() bool {
		return len(h.of(webhook.ParticipantLeave, aliceID, "")) > 0
	})
	for _, c := range []*client.Client{bob, carol} {
		eventually(t, 20*time.Second, "bob and carol are told alice left", func() bool { return !knows(c, aliceID) })
	}
	h.delivered(t, srvs[0], roomName, "dave")
	h.delivered(t, srvs[1], roomName, "erin")
	got := h.of(webhook.TrackUnpublished, aliceID, trackID)
	if len(got) != 1 {
		t.Fatalf("track_unpublished for alice's track %s sent %d times, want once", trackID, len(got))
	}
	e := got[0]
	if e.Participant.Identity != "alice" || e.Track.Kind != "audio" || e.Room.SID == "" {
		t.Errorf("track_unpublished: participant %+v, track %+v, room %+v; want alice's audio track in the room", *e.Participant, *e.Track, e.Room)
	}
	if tu, pl := h.index(webhook.TrackUnpublished, aliceID), h.index(webhook.ParticipantLeave, aliceID); tu > pl {
		t.Errorf("track_unpublished (#%d) came after participant_left (#%d)", tu, pl)
	}
	if n := len(h.of(webhook.ParticipantLeave, aliceID, "")); n != 1 {
		t.Errorf("participant_left for alice sent %d times, want once", n)
	}
}

// seesTrack: c was told of track id (in its join result or later).
func seesTrack(c *client.Client, id string) bool {
	for _, p := range c.LastJoin().Participants {
		for _, tr := range p.Tracks {
			if tr.ID == id {
				return true
			}
		}
	}
	for _, e := range c.Events() {
		var p protocol.TrackParams
		if e.Method == protocol.NotifyTrackPublished && json.Unmarshal(e.Params, &p) == nil && p.Track.ID == id {
			return true
		}
	}
	return false
}

// A killed node that held a room alone: no live node had a stub of its
// publisher, yet the track's track_unpublished is sent once, by a live
// node, from the track's key in the room state (cluster/trackkeys.go),
// with the fields its own node would have sent. Before, no node knew the
// track and none was sent.
func TestWebhookTrackUnpublishedForKilledNodesLoneRoom(t *testing.T) {
	parallel(t)
	const roomName = "dead-lone-tracks"
	h := newHookLog(t, roomName)
	srvs := deadNodeCluster(t, h, 30*time.Second)
	// n0 and n1 have heard n2 (its heartbeat): this test is about the
	// tracks of a node found dead by its heartbeats' expiry; one killed
	// before anyone heard it is TestNodeKilledBeforeItWasHeard's.
	eventually(t, 20*time.Second, "n0 and n1 list n2", func() bool {
		for _, s := range srvs[:2] {
			if len(s.Cluster().Nodes()) != 3 {
				return false
			}
		}
		return true
	})
	alice := join(t, srvs[2], roomName, "alice", token(t, "alice", roomName))
	aliceID := alice.ParticipantID()
	pub := publishMedia(t, alice, false)
	trackID := pub.published[0].Track.ID
	eventually(t, 20*time.Second, "the room state keeps alice's track", func() bool {
		return slices.Contains(srvs[0].Cluster().StoredTracks("n2"), trackID)
	})

	srvs[2].Abort()
	eventually(t, 40*time.Second, "track_unpublished is sent for alice's track", func() bool {
		return len(h.of(webhook.TrackUnpublished, aliceID, trackID)) > 0
	})
	settled(t, h, srvs[:2], roomName)
	got := h.of(webhook.TrackUnpublished, aliceID, trackID)
	if len(got) != 1 {
		t.Fatalf("track_unpublished for alice's track %s sent %d times, want once", trackID, len(got))
	}
	e := got[0]
	if e.Participant.Identity != "alice" || e.Track.Kind != "audio" || e.Room.SID != alice.LastJoin().Room.SID {
		t.Errorf("track_unpublished: participant %+v, track %+v, room %+v; want alice's audio track in room %s", *e.Participant, *e.Track, e.Room, alice.LastJoin().Room.SID)
	}
	eventually(t, 20*time.Second, "the dead node's track keys are gone", func() bool {
		return len(srvs[0].Cluster().StoredTracks("n2")) == 0
	})
}
