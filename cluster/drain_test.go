package cluster_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/starling-rtc/starling/client"
	"github.com/starling-rtc/starling/protocol"
)

// A node shutting down hands its participants over: a publisher on it
// resumes through another node (new connections, same participant), its
// subscriber on a third node hears it again and is never told it left.
func TestShutdownHandsParticipantsOver(t *testing.T) {
	t.Parallel()
	// The nodes' resume window must outlast the state store's leader
	// election after n2 goes (a few seconds on a loaded machine): with the
	// harness's 1 s window, a's member entry was dropped before n0 could
	// take it over, and the resume failed about one run in three.
	srvs := failoverCluster(t)
	api, err := client.LoopbackAPI()
	if err != nil {
		t.Fatal(err)
	}
	a, err := client.Dial(ctxT(t, 20*time.Second), srvs[2].SignalingURL(), "drain",
		client.Options{Name: "a", API: api, URLs: []string{srvs[0].SignalingURL()}, AutoResume: true, ResumeWindow: 20 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.Close)
	b := join(t, srvs[1], "drain", "b")
	rb := countMedia(b)
	seeEachOther(t, a, b)
	publishMedia(t, a, false)
	eventually(t, 20*time.Second, "b (n1) hears a (n2)", func() bool { return rb.count(a.ParticipantID(), "audio") > 25 })

	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := srvs[2].Shutdown(ctx); err != nil {
		t.Fatalf("n2 shutdown: %v", err)
	}
	ev, err := a.WaitEvent(ctxT(t, 20*time.Second), client.EventResumed, nil)
	if err != nil {
		t.Fatalf("a did not resume through n0: %v", err)
	}
	var res protocol.JoinResult
	_ = json.Unmarshal(ev.Params, &res)
	if !res.NewConnections || res.Participant.ID != a.ParticipantID() {
		t.Fatalf("resume result: newConnections %v, participant %s; want true, %s", res.NewConnections, res.Participant.ID, a.ParticipantID())
	}
	before := rb.count(a.ParticipantID(), "audio")
	eventually(t, 20*time.Second, "b hears a again through n0", func() bool { return rb.count(a.ParticipantID(), "audio") > before+25 })
	for _, e := range b.Events() {
		if e.Method == protocol.NotifyParticipantLeft {
			t.Fatalf("b was told someone left: %s", e.Params)
		}
	}
}
