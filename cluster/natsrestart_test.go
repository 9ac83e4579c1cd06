package cluster_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/starling-rtc/starling/client"
	"github.com/starling-rtc/starling/cluster"
	"github.com/starling-rtc/starling/config"
	"github.com/starling-rtc/starling/protocol"
	"github.com/starling-rtc/starling/recorder"
	"github.com/starling-rtc/starling/server"
)

// The external NATS server restarts: besides the rooms and their members
// (TestNATSRestartRebuildsRoomState), each node writes back what it owns
// that lived in the lost bucket — its room recording's claim (the
// recording goes on, its lease renewed in the new bucket, instead of
// stopping as failed), the admin's mix settings of its rooms, and the
// webhook claims it made (a participant_left it sent is not sent again by
// another node). And nobody is told anyone left or joined: nobody did.
// Before, the claims and settings were gone, and a node whose watch saw
// the new bucket before the other node wrote its members back removed
// them for a second (participantLeft, then participantJoined).
func TestNATSRestartWritesOwnedKeysBack(t *testing.T) {
	busCutTurn(t)
	hook := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	t.Cleanup(hook.Close)
	addr, restartNATS := restartableNATS(t)
	srvs := make([]*server.Server, 2)
	for i := range srvs {
		cfg := nodeConfig([]int{0, 0}, i, func(c *config.Config) {
			c.Room.ResumeWindow = config.Duration(20 * time.Second)
			c.Cluster.Listen, c.Cluster.Routes = "", nil
			c.Cluster.NATSURL = "nats://starling:" + testSecret + "@" + addr
			c.Recordings.Dir = t.TempDir()
			c.Webhook.URLs = []string{hook.URL}
			withKeys(c)
		})
		srvs[i] = serveNode(t, cfg, i)
	}
	const rm = "nats-restart-owned"
	alice := join(t, srvs[0], rm, "alice", token(t, "alice", rm))
	bob := join(t, srvs[1], rm, "bob", token(t, "bob", rm))
	seeEachOther(t, alice, bob)

	// A participant_left claim (dave leaves n0), bob's mix setting (set
	// through n1) and a room recording on n0.
	dave := join(t, srvs[0], rm, "dave", token(t, "dave", rm))
	daveID := dave.ParticipantID()
	_ = dave.Leave(ctxT(t, 10*time.Second))
	eventually(t, 15*time.Second, "n0 claimed dave's participant_left", func() bool {
		s, err := srvs[0].Cluster().ClaimStored(cluster.OnceParticipantLeft, daveID)
		return err == nil && s == "claim"
	})
	admin := adminToken(t)
	var set cluster.MixSetting
	if code := httpJSONAuth(t, "POST", srvs[1].BaseURL()+"/v1/rooms/"+rm+"/participants/"+bob.ParticipantID()+"/mix", admin, map[string]any{"gain": 0.5}, &set); code != http.StatusOK {
		t.Fatalf("bob's mix setting: %d", code)
	}
	var rec recorder.Info
	if code := httpJSONAuth(t, "POST", srvs[0].BaseURL()+"/v1/rooms/"+rm+"/recordings", admin, map[string]any{}, &rec); code != http.StatusCreated {
		t.Fatalf("start the recording on n0: %d", code)
	}
	claim, _, err := srvs[0].Cluster().RecordingClaim(rm)
	if err != nil || claim == nil {
		t.Fatalf("no recording claim after the start: %v", err)
	}

	restartNATS(srvs)
	carol := join(t, srvs[1], rm, "carol", token(t, "carol", rm))
	seeEachOther(t, alice, bob, carol)

	var back uint64
	eventually(t, 15*time.Second, "the recording claim is back, the same", func() bool {
		v, rev, err := srvs[1].Cluster().RecordingClaim(rm)
		back = rev
		return err == nil && string(v) == string(claim) && rev > 0
	})
	eventually(t, 15*time.Second, "n0 renews the recording claim in the new bucket", func() bool {
		_, rev, err := srvs[1].Cluster().RecordingClaim(rm)
		return err == nil && rev > back
	})
	if in, ok := srvs[0].Recorder().Get(rec.ID); !ok || in.Status != "recording" {
		t.Errorf("n0's recording after the restart: %+v, want still recording", in)
	}
	eventually(t, 15*time.Second, "bob's mix setting is back in the store", func() bool {
		p, err := srvs[0].Cluster().StoredMix(rm)
		return err == nil && p[bob.ParticipantID()] == cluster.MixSetting{Gain: 0.5}
	})
	eventually(t, 15*time.Second, "n0's participant_left claim of dave is back", func() bool {
		s, err := srvs[1].Cluster().ClaimStored(cluster.OnceParticipantLeft, daveID)
		return err == nil && s == "claim"
	})
	for _, c := range []struct {
		who     *client.Client
		others  []*client.Client
		whoName string
	}{{alice, []*client.Client{bob}, "alice"}, {bob, []*client.Client{alice}, "bob"}} {
		for _, o := range c.others {
			if sawLeave(c.who, o.ParticipantID()) {
				t.Errorf("%s was told %s left", c.whoName, o.ParticipantID())
			}
			if k := joinedTimes(c.who, o.ParticipantID()); k > 1 {
				t.Errorf("%s was told %d times that %s joined", c.whoName, k, o.ParticipantID())
			}
		}
	}
}

// joinedTimes counts c's participantJoined notices of participant id.
func joinedTimes(c *client.Client, id string) int {
	k := 0
	for _, e := range c.Events() {
		var p protocol.ParticipantParams
		if e.Method == protocol.NotifyParticipantJoined && json.Unmarshal(e.Params, &p) == nil && p.Participant.ID == id {
			k++
		}
	}
	return k
}
