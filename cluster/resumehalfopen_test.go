package cluster_test

import (
	"testing"
	"time"

	"github.com/starling-rtc/starling/client"
	"github.com/starling-rtc/starling/config"
	"github.com/starling-rtc/starling/internal/testutil"
)

// TestResumeTakesOverHalfOpenSocket: alice's way to her node n0 breaks
// (a half proxy: her side closes, n0's stays open, as on a dead network)
// while n0 stays up and sees nothing for as long as its keepalive allows
// (here two minutes, longer than alice's resume window). Her client
// resumes through n1, which asks n0 to hand her over; n0 releases her at
// once although her old socket still looks open there (the resume token
// is the credential, as for a resume on one node that comes before the old
// socket is seen dead). Before, n0 answered "held" until it saw the socket
// drop, n1 answered 503 to every try, and the client gave up when its
// window ended. The others never see her leave, and her media reaches bob
// again from n1.
func TestResumeTakesOverHalfOpenSocket(t *testing.T) {
	parallel(t)
	srvs := startCluster(t, 3, func(c *config.Config) {
		c.Room.ResumeWindow = config.Duration(20 * time.Second)
		c.Limits.IdleTimeout = config.Duration(2 * time.Minute) // n0 must not notice the drop by itself
	})
	const room = "half-open"
	px := testutil.NewHalfProxy(t, srvs[0].Addr())
	api, err := client.LoopbackAPI()
	if err != nil {
		t.Fatal(err)
	}
	alice, err := client.Dial(ctxT(t, 15*time.Second), "ws://"+px.Addr()+"/v1/rtc", room, client.Options{Name: "alice",
		API: api, URLs: []string{srvs[1].SignalingURL()}, AutoResume: true,
		Logger: testLogger().With("client", "alice")})
	if err != nil {
		t.Fatalf("alice joins: %v", err)
	}
	t.Cleanup(alice.Close)
	bob := join(t, srvs[2], room, "bob")
	rb := countMedia(bob)
	seeEachOther(t, alice, bob)
	publishMedia(t, alice, false)
	id := alice.ParticipantID()
	eventually(t, 30*time.Second, "alice's audio reaches bob", func() bool { return rb.count(id, "audio") >= 50 })

	px.Cut()
	eventually(t, 45*time.Second, "alice's client resumes or gives up", func() bool {
		return resumedCount(alice) > 0 || len(resumeFailures(alice)) > 0
	})
	if resumedCount(alice) == 0 {
		t.Fatalf("alice's resume through n1 while n0 holds her half-open socket failed: %s", trail(alice))
	}
	if res := alice.LastJoin(); res.Participant.ID != id || !res.NewConnections || alice.URL() != srvs[1].SignalingURL() {
		t.Fatalf("resumed as %s through %s (newConnections %v), want %s through n1", res.Participant.ID, alice.URL(),
			res.NewConnections, id)
	}
	eventually(t, 10*time.Second, "n0 no longer holds alice", func() bool {
		r := srvs[0].Rooms().Room(room)
		if r == nil {
			return true
		}
		p := r.Participant(id)
		return p == nil || p.Remote() == "n1"
	})
	b0 := rb.count(id, "audio")
	eventually(t, 30*time.Second, "alice's audio reaches bob again", func() bool { return rb.count(id, "audio") >= b0+50 })
	if sawLeave(bob, id) {
		t.Error("bob saw alice leave")
	}
}
