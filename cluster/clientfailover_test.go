package cluster_test

import (
	"context"
	"encoding/json"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/starling-rtc/starling/client"
	"github.com/starling-rtc/starling/config"
	"github.com/starling-rtc/starling/internal/testutil"
	"github.com/starling-rtc/starling/protocol"
)

// TestClientFailsOverToAnotherNode: a publisher that knows two nodes of
// the cluster loses its node (shut down); the Go client carries on
// through the other one, with new connections and its tracks published
// again, and a viewer on a third node gets its media again through the
// relay. Where the cluster resumes the session on another node the
// participant stays the same (join result newConnections); otherwise the
// client joins afresh (Options.Rejoin) as a new participant.
func TestClientFailsOverToAnotherNode(t *testing.T) {
	parallelLongest(t)
	srvs := startCluster(t, 3, nil)
	const room = "client-failover"
	viewer := join(t, srvs[2], room, "viewer")
	rv := countMedia(viewer)
	api, err := client.LoopbackAPI()
	if err != nil {
		t.Fatal(err)
	}
	pub, err := client.Dial(ctxT(t, 15*time.Second), srvs[0].SignalingURL()+","+srvs[1].SignalingURL(), room,
		client.Options{Name: "pub", API: api, Rejoin: true})
	if err != nil {
		t.Fatalf("pub joins: %v", err)
	}
	t.Cleanup(pub.Close)
	seeEachOther(t, viewer, pub)
	publishMedia(t, pub, true)
	firstID := pub.ParticipantID()
	eventually(t, 30*time.Second, "the viewer on n2 gets the publisher's media from n0", func() bool {
		return rv.count(firstID, "audio") >= 50 && rv.count(firstID, "video") >= 30
	})

	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := srvs[0].Shutdown(ctx); err != nil {
		t.Fatalf("shutting n0 down: %v", err)
	}
	var how string
	t.Cleanup(func() {
		if how == "" {
			for _, e := range pub.Events() {
				t.Logf("pub event %s %s", e.Method, e.Params)
			}
		}
	})
	eventually(t, 30*time.Second, "the publisher resumes or rejoins through n1", func() bool {
		for _, e := range pub.Events() {
			if e.Method == client.EventResumed || e.Method == client.EventRejoined {
				how = e.Method
				return true
			}
		}
		return false
	})
	if pub.URL() != srvs[1].SignalingURL() {
		t.Fatalf("the publisher is on %s, want n1 (%s)", pub.URL(), srvs[1].SignalingURL())
	}
	id := pub.ParticipantID()
	switch how {
	case client.EventResumed:
		if id != firstID || !pub.LastJoin().NewConnections {
			t.Fatalf("resumed as %s (was %s), newConnections %v: want the same participant on new connections",
				id, firstID, pub.LastJoin().NewConnections)
		}
	case client.EventRejoined:
		if id == firstID {
			t.Fatalf("rejoined as the same participant %s", id)
		}
	}
	t.Logf("the publisher %s through n1 (participant %s)", how, id)
	before := rv.count(id, "audio")
	eventually(t, 30*time.Second, "the viewer on n2 gets the publisher's media again, now from n1", func() bool {
		return rv.count(id, "audio") >= before+50 && rv.count(id, "video") >= 30
	})
}

// TestClientResumesThroughAnotherNode: the publisher's node dies (its
// cluster side crashes and its signaling becomes unreachable, as with
// SIGKILL); the Go client, given a second node, resumes through it as
// the same participant: new connections (newConnections), its audio and
// video published again, and the viewer on a third node never sees it
// leave and gets its media again.
func TestClientResumesThroughAnotherNode(t *testing.T) {
	parallel(t)
	srvs := startCluster(t, 3, func(c *config.Config) { c.Room.ResumeWindow = config.Duration(20 * time.Second) })
	const room = "client-resume-elsewhere"
	viewer := join(t, srvs[2], room, "viewer")
	rv := countMedia(viewer)
	px := testutil.NewProxy(t, srvs[0].Addr())
	api, err := client.LoopbackAPI()
	if err != nil {
		t.Fatal(err)
	}
	pub, err := client.Dial(ctxT(t, 15*time.Second), "ws://"+px.Addr()+"/v1/rtc", room,
		client.Options{Name: "pub", API: api, URLs: []string{srvs[1].SignalingURL()}, AutoResume: true})
	if err != nil {
		t.Fatalf("pub joins: %v", err)
	}
	t.Cleanup(pub.Close)
	seeEachOther(t, viewer, pub)
	publishMedia(t, pub, true)
	id := pub.ParticipantID()
	eventually(t, 30*time.Second, "the viewer on n2 gets the publisher's media from n0", func() bool {
		return rv.count(id, "audio") >= 50 && rv.count(id, "video") >= 30
	})

	srvs[0].Cluster().Crash()
	px.Cut()
	crashed := time.Now()
	ev, err := pub.WaitEvent(ctxT(t, 30*time.Second), client.EventResumed, nil)
	if err != nil {
		t.Fatalf("no resume through n1: %v (events %v)", err, eventMethods(pub.Events()))
	}
	var res protocol.JoinResult
	if err := json.Unmarshal(ev.Params, &res); err != nil {
		t.Fatal(err)
	}
	if !res.NewConnections || res.Participant.ID != id || pub.ParticipantID() != id || pub.URL() != srvs[1].SignalingURL() {
		t.Fatalf("resumed as %s through %s, newConnections %v: want %s through n1 on new connections",
			res.Participant.ID, pub.URL(), res.NewConnections, id)
	}
	if got := pub.Published(); len(got) != 2 {
		t.Fatalf("published again: %+v, want audio and video", got)
	}
	a0, v0 := rv.count(id, "audio"), rv.count(id, "video")
	eventually(t, 30*time.Second, "the viewer on n2 gets the publisher's media again, now from n1", func() bool {
		return rv.count(id, "audio") >= a0+50 && rv.count(id, "video") >= v0+30
	})
	t.Logf("resumed through n1 and media back at the viewer %v after the crash", time.Since(crashed).Round(time.Millisecond))
	for _, e := range viewer.Events() {
		if e.Method == protocol.NotifyParticipantLeft && strings.Contains(string(e.Params), id) {
			t.Fatalf("the viewer was told the publisher left: %s", e.Params)
		}
	}
}

func eventMethods(evs []client.Event) []string {
	out := make([]string, 0, len(evs))
	for _, e := range evs {
		out = append(out, e.Method)
	}
	return out
}

// TestClientLeavesDrainingNode: a draining node sends `reconnect` and
// closes the socket; the Go client resumes through the next node without
// trying the draining one again (it would refuse with 500).
func TestClientLeavesDrainingNode(t *testing.T) {
	parallel(t)
	srvs := startCluster(t, 3, func(c *config.Config) { c.Room.ResumeWindow = config.Duration(20 * time.Second) })
	api, err := client.LoopbackAPI()
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var dials []string
	var d net.Dialer
	pub, err := client.Dial(ctxT(t, 15*time.Second), srvs[0].SignalingURL(), "drain-order", client.Options{
		Name: "pub", API: api, URLs: []string{srvs[1].SignalingURL()}, AutoResume: true,
		NetDialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			mu.Lock()
			dials = append(dials, addr)
			mu.Unlock()
			return d.DialContext(ctx, network, addr)
		},
	})
	if err != nil {
		t.Fatalf("pub joins: %v", err)
	}
	t.Cleanup(pub.Close)
	publishMedia(t, pub, false)
	id := pub.ParticipantID()

	// Generous: the drain ends when n1 says the resumed participant
	// settled (its new connection delivering), which under -race beside
	// the package's other clusters took more than 20 s once.
	if left := srvs[0].Drain(ctxT(t, 45*time.Second)); left != 0 {
		t.Fatalf("%d participants still on the drained node", left)
	}
	if _, err := pub.WaitEvent(ctxT(t, 20*time.Second), client.EventResumed, nil); err != nil {
		t.Fatalf("no resume after the drain: %v (events %v)", err, eventMethods(pub.Events()))
	}
	if pub.ParticipantID() != id || pub.URL() != srvs[1].SignalingURL() || !pub.LastJoin().NewConnections {
		t.Fatalf("after the drain: %s through %s (newConnections %v), want %s through n1", pub.ParticipantID(), pub.URL(),
			pub.LastJoin().NewConnections, id)
	}
	mu.Lock()
	defer mu.Unlock()
	if want := []string{srvs[0].Addr(), srvs[1].Addr()}; !slices.Equal(dials, want) {
		t.Fatalf("dialled %v, want %v: the draining node must not be tried again", dials, want)
	}
}
