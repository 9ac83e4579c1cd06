package cluster_test

import (
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/starling-rtc/starling/config"
	"github.com/starling-rtc/starling/protocol"
	"github.com/starling-rtc/starling/server"
)

// A node killed with SIGKILL and restarted at once with the same --node-id
// (a supervisor's restart) is a dead node for its earlier participants:
// carol resumes through another node (new connections, same id), and
// alice, who never comes back, leaves after the resume window: bob is
// told, and no node lists her any more. Before, the restarted node purged
// its earlier members at its start from its own replica of the store,
// still catching up, and found none: alice stayed in the room for good
// (checked from outside with three processes), and carol's resume through
// n1 got 404, since n0, alive again, did not know her when asked to hand
// her over.
func TestNodeRestartedWithSameID(t *testing.T) {
	parallelLongest(t)
	const roomName = "restarted"
	var ports []int
	tune := func(c *config.Config) { c.Room.ResumeWindow = config.Duration(10 * time.Second) }
	srvs := startClusterOn(t, 3, func(p []int) func(*config.Config) { ports = p; return tune })
	eventually(t, 30*time.Second, "the room state store is on 3 current replicas", func() bool {
		ok, _ := srvs[0].Cluster().StoreReplicated(3)
		return ok
	})
	// Every node has heard n0's earlier run (a node killed before the
	// others heard it is another case: neverHeard, nodes.go).
	eventually(t, 15*time.Second, "every node lists the three nodes", func() bool {
		for _, s := range srvs {
			if len(s.Cluster().Nodes()) != 3 {
				return false
			}
		}
		return true
	})
	alice := join(t, srvs[0], roomName, "alice")
	carol := join(t, srvs[0], roomName, "carol")
	erin := join(t, srvs[0], roomName, "erin") // kicked through n2 once n0 is back
	bob := join(t, srvs[1], roomName, "bob")
	dave := join(t, srvs[2], roomName, "dave")
	rb := countMedia(bob)
	seeEachOther(t, alice, carol, erin, bob, dave)
	publishMedia(t, alice, false)
	aliceID, carolID, carolToken := alice.ParticipantID(), carol.ParticipantID(), carol.ResumeToken()
	erinID, erinToken := erin.ParticipantID(), erin.ResumeToken()
	eventually(t, 20*time.Second, "bob hears alice", func() bool { return rb.count(aliceID, "audio") > 10 })
	aliceTracks := publishedIDs(alice)

	srvs[0].Abort()
	restarted, err := server.New(nodeConfig(ports, 0, tune), testLogger().With("test-node", "0-restarted", "test", t.Name()))
	if err != nil {
		t.Fatalf("restarting n0 with the same id: %v", err)
	}
	restarted.Serve()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		_ = restarted.Shutdown(ctx)
	})

	// A kick through n2 of erin, n0's earlier participant, right after the
	// restart: n0 speaks for her, every node drops her as "kicked", and her
	// token is refused (before, n0 did not know her and nothing happened
	// until the window's end; then, a node just started told no other).
	req, _ := http.NewRequest(http.MethodDelete, srvs[2].BaseURL()+"/v1/rooms/"+roomName+"/participants/"+erinID, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("kick of erin through n2: %s", resp.Status)
	}
	eventually(t, 15*time.Second, "bob is told erin left", func() bool { return !knows(bob, erinID) })
	for _, e := range bob.Events() {
		var p protocol.ParticipantLeftParams
		if e.Method == protocol.NotifyParticipantLeft && json.Unmarshal(e.Params, &p) == nil && p.ParticipantID == erinID && p.Reason != protocol.ReasonKicked {
			t.Errorf("bob was told erin left with %q, want %q", p.Reason, protocol.ReasonKicked)
		}
	}
	if e := storeResume(t, srvs[1], roomName, erinToken); e == nil || e.Code != protocol.CodeNotFound {
		t.Errorf("erin's resume after the kick: %v, want 404", e)
	}

	// Alice's track ends at once (its media came from n0's earlier run),
	// while she stays for the window: before, a restart quicker than the
	// heartbeat expiry left it published, without media, until she left.
	restartedAt := time.Now()
	eventually(t, 15*time.Second, "bob is told alice's track ended", func() bool {
		for _, e := range bob.Events() {
			var p protocol.TrackUnpublishedParams
			if e.Method == protocol.NotifyTrackUnpublished && json.Unmarshal(e.Params, &p) == nil && slices.Contains(aliceTracks, p.TrackID) {
				return true
			}
		}
		return false
	})
	if !knows(bob, aliceID) {
		t.Errorf("bob was told alice left %v after n0 restarted (window 10 s), before or with her track's end", time.Since(restartedAt).Round(time.Millisecond))
	}

	if e := storeResume(t, srvs[1], roomName, carolToken); e != nil {
		// The time since the restart says whether the resume window (10 s)
		// had passed: the restarted node then removes its earlier run's
		// members, and 404 is right (a loaded run, session 23).
		t.Fatalf("carol's resume through n1 %s after n0 restarted: %v, want it taken over", time.Since(restartedAt).Round(time.Millisecond), e)
	}
	if p := srvs[1].Rooms().Room(roomName).Participant(carolID); p == nil || p.Remote() != "" {
		t.Fatalf("carol is not n1's participant after her resume there")
	}
	if knows(bob, carolID) == false || knows(dave, carolID) == false {
		t.Errorf("bob or dave was told carol left")
	}

	eventually(t, 30*time.Second, "bob and dave are told alice left", func() bool {
		return !knows(bob, aliceID) && !knows(dave, aliceID)
	})
	for _, s := range []*server.Server{restarted, srvs[1], srvs[2]} {
		var detail struct {
			Participants []struct{ ID string } `json:"participants"`
		}
		var list struct {
			Rooms []struct {
				Name            string `json:"name"`
				NumParticipants int    `json:"numParticipants"`
			} `json:"rooms"`
		}
		eventually(t, 20*time.Second, s.Cluster().ID()+" no longer lists alice", func() bool {
			if adminGet(t, s.BaseURL()+"/v1/rooms/"+roomName, &detail) != http.StatusOK || adminGet(t, s.BaseURL()+"/v1/rooms", &list) != http.StatusOK {
				return false
			}
			var ids []string
			for _, p := range detail.Participants {
				ids = append(ids, p.ID)
			}
			counted := -1
			for _, r := range list.Rooms {
				if r.Name == roomName {
					counted = r.NumParticipants
				}
			}
			return !slices.Contains(ids, aliceID) && counted == len(ids)
		})
	}
}
