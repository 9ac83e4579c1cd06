package cluster_test

import (
	"slices"
	"testing"
	"time"

	"github.com/starling-rtc/starling/client"
	"github.com/starling-rtc/starling/config"
	"github.com/starling-rtc/starling/webhook"
)

// n2 is cut off from the bus past the resume window: n0 purges alice and
// dave (on n2) and a live node sends their participant_left
// ("disconnected"). When the bus is back, n2 writes alice back
// (writeback.go); when she then really leaves, her participant_left is not
// sent again: the first send claimed it for the cluster (hookonce.go).
// Before, she was reported gone twice. dave leaves during the cut: n2
// cannot reach the store to claim his participant_left, holds the claim
// until the bus is back, then finds n0's and sends nothing. Before, n2
// sent its own ("clientLeave") after 5 s without the store: twice.
func TestBusCutLongParticipantLeftOnce(t *testing.T) {
	const rm = "cut-hooks"
	h := newHookLog(t, rm)
	srvs, proxy, alice, dave, bob := cutRoom(t, rm, 1500*time.Millisecond, func(c *config.Config) {
		withKeys(c)
		c.Webhook.URLs = []string{h.url}
	}, func(name string) []func(*client.Options) {
		return []func(*client.Options){token(t, name, rm)}
	})
	aliceID, daveID := alice.ParticipantID(), dave.ParticipantID()

	cutOff(t, srvs, proxy, rm, true, []*client.Client{bob})
	eventually(t, 30*time.Second, "participant_left is sent for alice and dave, purged", func() bool {
		return len(h.of(webhook.ParticipantLeave, aliceID, "")) > 0 && len(h.of(webhook.ParticipantLeave, daveID, "")) > 0
	})
	_ = dave.Leave(ctxT(t, 10*time.Second))
	eventually(t, 30*time.Second, "n2 has queued dave's participant_left claim", func() bool {
		return !srvs[2].Cluster().HooksIdle()
	})
	// The cut goes on past the 5 s after which n2 used to send it without
	// the store.
	for deadline := time.Now().Add(6 * time.Second); time.Now().Before(deadline) && len(h.of(webhook.ParticipantLeave, daveID, "")) < 2; {
		time.Sleep(100 * time.Millisecond)
	}
	heal(t, srvs, proxy)
	eventually(t, 30*time.Second, "n2 writes alice back into the room state", func() bool {
		return slices.Contains(srvs[0].Cluster().StateMembers(rm), aliceID)
	})

	_ = alice.Leave(ctxT(t, 10*time.Second))
	eventually(t, 30*time.Second, "alice's leave reaches the room state", func() bool {
		return !slices.Contains(srvs[0].Cluster().StateMembers(rm), aliceID)
	})
	h.delivered(t, srvs[2], rm, "erin") // n2's participant_left for alice or dave would be before erin's join
	h.delivered(t, srvs[0], rm, "fred")
	for who, id := range map[string]string{"alice": aliceID, "dave": daveID} {
		if got := h.reasons(id); len(got) != 1 {
			t.Errorf("participant_left for %s sent %d times (%v), want once", who, len(got), got)
		}
	}
}
