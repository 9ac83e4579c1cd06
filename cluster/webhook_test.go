package cluster_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/starling-rtc/starling/config"
	"github.com/starling-rtc/starling/webhook"
)

// Each webhook event is sent once for the cluster: the room's start and
// end once, each participant's join and leave once, whichever node it used.
func TestWebhooksOncePerCluster(t *testing.T) {
	parallel(t)
	var mu sync.Mutex
	counts := map[string]int{}
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var e webhook.Event
		if json.NewDecoder(r.Body).Decode(&e) == nil && e.Room.Name == "hooks" {
			mu.Lock()
			counts[e.Event]++
			mu.Unlock()
		}
	}))
	t.Cleanup(hook.Close)
	srvs := startCluster(t, 2, func(c *config.Config) {
		withKeys(c)
		c.Webhook.URLs = []string{hook.URL}
	})
	a := join(t, srvs[0], "hooks", "a", token(t, "a", "hooks"))
	b := join(t, srvs[1], "hooks", "b", token(t, "b", "hooks"))
	seeEachOther(t, a, b)
	_ = a.Leave(ctxT(t, 10*time.Second))
	_ = b.Leave(ctxT(t, 10*time.Second))
	get := func(ev string) int {
		mu.Lock()
		defer mu.Unlock()
		return counts[ev]
	}
	eventually(t, 20*time.Second, "room_finished is sent", func() bool { return get(webhook.RoomFinished) >= 1 })
	time.Sleep(time.Second) // a duplicate from the other node would come within this
	mu.Lock()
	defer mu.Unlock()
	want := map[string]int{webhook.RoomStarted: 1, webhook.RoomFinished: 1, webhook.ParticipantJoin: 2, webhook.ParticipantLeave: 2}
	for ev, n := range want {
		if counts[ev] != n {
			t.Errorf("%s sent %d times, want %d (all: %v)", ev, counts[ev], n, counts)
		}
	}
}
