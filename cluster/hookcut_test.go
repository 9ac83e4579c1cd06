package cluster_test

import (
	"slices"
	"testing"
	"time"

	"github.com/starling-rtc/starling/client"
	"github.com/starling-rtc/starling/config"
	"github.com/starling-rtc/starling/webhook"
)

// n2 is cut off from the bus past the resume window: n0 purges alice (on
// n2) and a live node sends her participant_left ("disconnected"). When
// the bus is back, n2 writes her back (writeback.go); when she then really
// leaves, her participant_left is not sent again: the first send claimed
// it for the cluster (hookonce.go). Before, she was reported gone twice.
func TestBusCutLongParticipantLeftOnce(t *testing.T) {
	const rm = "cut-hooks"
	h := newHookLog(t, rm)
	srvs, proxy, alice, _, bob := cutRoom(t, rm, 1500*time.Millisecond, func(c *config.Config) {
		withKeys(c)
		c.Webhook.URLs = []string{h.url}
	}, func(name string) []func(*client.Options) {
		return []func(*client.Options){token(t, name, rm)}
	})
	aliceID := alice.ParticipantID()

	cutOff(t, srvs, proxy, rm, true, []*client.Client{bob})
	eventually(t, 30*time.Second, "participant_left is sent for alice, purged", func() bool {
		return len(h.of(webhook.ParticipantLeave, aliceID, "")) > 0
	})
	heal(t, srvs, proxy)
	eventually(t, 30*time.Second, "n2 writes alice back into the room state", func() bool {
		return slices.Contains(srvs[0].Cluster().StateMembers(rm), aliceID)
	})

	_ = alice.Leave(ctxT(t, 10*time.Second))
	eventually(t, 30*time.Second, "alice's leave reaches the room state", func() bool {
		return !slices.Contains(srvs[0].Cluster().StateMembers(rm), aliceID)
	})
	h.delivered(t, srvs[2], rm, "erin") // n2's participant_left for alice would be before erin's join
	if got := h.of(webhook.ParticipantLeave, aliceID, ""); len(got) != 1 {
		reasons := []string{}
		for _, e := range got {
			reasons = append(reasons, e.Reason)
		}
		t.Errorf("participant_left for alice sent %d times (%v), want once", len(got), reasons)
	}
}

// alice leaves n2 while n2 is cut off from the bus, after n0 has purged
// her (its participant_left, "disconnected", claimed for the cluster).
// n2 cannot reach the store to claim hers: it holds the claim until the
// bus is back, then finds n0's and sends nothing. Before, n2 sent its own
// ("clientLeave") after 5 s without the store: twice.
func TestBusCutLeaveDuringCutParticipantLeftOnce(t *testing.T) {
	const rm = "cut-hooks-leave"
	h := newHookLog(t, rm)
	srvs, proxy, alice, _, bob := cutRoom(t, rm, 1500*time.Millisecond, func(c *config.Config) {
		withKeys(c)
		c.Webhook.URLs = []string{h.url}
	}, func(name string) []func(*client.Options) {
		return []func(*client.Options){token(t, name, rm)}
	})
	aliceID := alice.ParticipantID()

	cutOff(t, srvs, proxy, rm, true, []*client.Client{bob})
	eventually(t, 30*time.Second, "participant_left is sent for alice, purged", func() bool {
		return len(h.of(webhook.ParticipantLeave, aliceID, "")) > 0
	})
	_ = alice.Leave(ctxT(t, 10*time.Second))
	eventually(t, 30*time.Second, "n2 has queued alice's participant_left claim", func() bool {
		return !srvs[2].Cluster().HooksIdle()
	})
	// Past the 5 s after which n2 used to send it without the store: a
	// duplicate it sends during the cut is in the log before the heal.
	for deadline := time.Now().Add(6 * time.Second); time.Now().Before(deadline) && len(h.of(webhook.ParticipantLeave, aliceID, "")) < 2; {
		time.Sleep(100 * time.Millisecond)
	}
	heal(t, srvs, proxy)
	h.delivered(t, srvs[2], rm, "erin") // n2's claim is done once its queue is idle
	h.delivered(t, srvs[0], rm, "fred")
	if got := h.of(webhook.ParticipantLeave, aliceID, ""); len(got) != 1 {
		reasons := []string{}
		for _, e := range got {
			reasons = append(reasons, e.Reason)
		}
		t.Errorf("participant_left for alice sent %d times (%v), want once", len(got), reasons)
	}
}
