package cluster_test

import (
	"testing"
	"time"

	"github.com/starling-rtc/starling/client"
	"github.com/starling-rtc/starling/config"
	"github.com/starling-rtc/starling/protocol"
)

// TestResumeStoreUnavailableIsRetryable: a resume through a node that
// cannot reach the room state store (two of the three nodes are dead, so
// the store has no majority) is answered 503, try again, not 404: a 404
// ends the client's session, and the store comes back (a new stream
// leader, the nodes restarted). Before, any store error of the takeover
// was answered 404 and the client gave up (the early resume test's
// resumeFailed, when the dead node led the store's stream).
func TestResumeStoreUnavailableIsRetryable(t *testing.T) {
	parallel(t)
	srvs := failoverCluster(t)
	const room = "resume-nostore"
	alice := join(t, srvs[0], room, "alice")
	bob := join(t, srvs[1], room, "bob")
	seeEachOther(t, alice, bob)
	token := alice.ResumeToken()
	srvs[0].Cluster().Crash()
	srvs[2].Cluster().Crash()
	start := time.Now()
	if e := rawResume(t, srvs[1], room, token); e == nil || e.Code != protocol.CodeUnavailable {
		t.Fatalf("resume through the node left without a store majority: %v, want 503", e)
	}
	// The answer must come while the client still waits for it: a client
	// gives up on a node after 15 s (client.nodeJoinTimeout), and a node
	// that kept retrying its compare-and-set (the store without a leader
	// answers "wrong last sequence") held the socket silent for longer, so
	// the client's next attempt queued behind the first until its resume
	// window was over. The node's budget is 10 s.
	if d := time.Since(start); d > 15*time.Second {
		t.Fatalf("the 503 came %v after the resume: the client had given up on the node", d)
	}
	t.Logf("503 after %v", time.Since(start).Round(time.Millisecond))
}

// TestResumeTakeoverResultLost: a takeover through n1 consumed the token,
// but its join result never reached the client (here a raw socket that
// closes right after the answer, as a client whose request timed out
// while the store was slow, or a socket dropped before the answer). The
// client's next resume with the same token through n1 makes the
// participant again instead of ending the session with 404; bob never
// sees it leave.
func TestResumeTakeoverResultLost(t *testing.T) {
	parallelLongest(t)
	// A long resume window: on a loaded machine the store may take a while
	// to elect a new leader after n0 dies, and alice's member entry must
	// outlast it.
	srvs := startCluster(t, 3, func(c *config.Config) { c.Room.ResumeWindow = config.Duration(60 * time.Second) })
	const room = "resume-lost"
	alice := join(t, srvs[0], room, "alice", func(o *client.Options) { o.URLs = []string{srvs[1].SignalingURL()} })
	bob := join(t, srvs[2], room, "bob")
	seeEachOther(t, alice, bob)
	id, token := alice.ParticipantID(), alice.ResumeToken()
	srvs[0].Abort()
	select {
	case <-alice.Done(): // no AutoResume: the session waits for Resume
	case <-ctxT(t, 20*time.Second).Done():
		t.Fatal("alice's socket to the killed node did not drop")
	}
	// The lost attempt: n1 takes alice over, answers, the socket closes.
	eventually(t, 45*time.Second, "a takeover through n1", func() bool {
		e := rawResume(t, srvs[1], room, token)
		if e != nil && e.Code != protocol.CodeUnavailable {
			t.Fatalf("the first takeover through n1: %v", e)
		}
		return e == nil
	})
	// From now until she resumes, n1's part of the room (what it answers
	// another node's snapshot request with) must list alice: a snapshot
	// without her tells the others she left. Making her again used to
	// close the participant of the lost takeover first, then create the
	// new one, and a snapshot taken in between (or the room closing, empty
	// for a moment) made bob see her leave.
	stop, absent := make(chan struct{}), make(chan string, 1)
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		for {
			select {
			case <-stop:
				return
			default:
			}
			r := srvs[1].Rooms().Room(room)
			seen := false
			if r != nil {
				for _, rp := range r.Snapshot().Participants {
					seen = seen || rp.Info.ID == id
				}
			}
			if !seen {
				select {
				case absent <- map[bool]string{true: "n1's snapshot without alice", false: "the room closed on n1"}[r != nil]:
				default:
				}
			}
			time.Sleep(100 * time.Microsecond)
		}
	}()
	err := alice.Resume(ctxT(t, 20*time.Second))
	close(stop)
	<-watched
	if err != nil {
		t.Fatalf("alice resumes with the token of the lost takeover: %v", err)
	}
	select {
	case what := <-absent:
		t.Fatalf("while alice resumed after the lost takeover: %s", what)
	default:
	}
	if alice.ParticipantID() != id || !alice.LastJoin().NewConnections || alice.URL() != srvs[1].SignalingURL() {
		t.Fatalf("resumed as %s through %s (newConnections %v), want %s through n1", alice.ParticipantID(), alice.URL(),
			alice.LastJoin().NewConnections, id)
	}
	// The token is used now: a third try is refused.
	if e := storeResume(t, srvs[1], room, token); e == nil || e.Code != protocol.CodeNotFound {
		t.Fatalf("the token once more: %v, want 404", e)
	}
	if sawLeave(bob, id) {
		t.Fatal("bob saw alice leave")
	}
}
