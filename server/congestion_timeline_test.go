package server_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/starling-rtc/starling/client"
	"github.com/starling-rtc/starling/protocol"
	"github.com/starling-rtc/starling/server"
)

// updatesFor lists the subscriptionUpdated notifications c got for trackID.
func updatesFor(c *client.Client, trackID string) []protocol.SubscriptionUpdatedParams {
	var out []protocol.SubscriptionUpdatedParams
	for _, e := range c.Events() {
		var u protocol.SubscriptionUpdatedParams
		if e.Method == protocol.NotifySubscriptionUpdated && json.Unmarshal(e.Params, &u) == nil && u.TrackID == trackID {
			out = append(out, u)
		}
	}
	return out
}

// timeline records, from its start, when a congestion test's server and
// subscriber changed: probes started, probe raises, feedback timeouts,
// the subscriber told a layer, keyframes received. It is logged, not
// asserted: it says where a recovery's time went.
type timeline struct {
	mu    sync.Mutex
	lines []string
	stop  chan struct{}
	done  chan struct{}
	once  sync.Once
}

func recordTimeline(t *testing.T, srv *server.Server, sub *client.Client, v *videoWatcher, id string) *timeline {
	tl := &timeline{stop: make(chan struct{}), done: make(chan struct{})}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("timeline:\n%s", tl.end())
		}
		tl.end()
	})
	start := time.Now()
	go func() {
		defer close(tl.done)
		eng := srv.Engine()
		prev := eng.BWECounters()
		prevSizes, _ := v.snapshot()
		prevUpd := lastUpdate(sub, id)
		for {
			select {
			case <-tl.stop:
				return
			case <-time.After(5 * time.Millisecond):
			}
			at := time.Since(start).Seconds()
			c := eng.BWECounters()
			add := func(f string, a ...any) {
				tl.mu.Lock()
				tl.lines = append(tl.lines, fmt.Sprintf("%6.3f s ", at)+fmt.Sprintf(f, a...))
				tl.mu.Unlock()
			}
			if c.Probes != prev.Probes {
				add("probe %d", c.Probes)
			}
			if c.ProbeRaises != prev.ProbeRaises {
				add("probe raise %d", c.ProbeRaises)
			}
			if c.FeedbackTimeouts != prev.FeedbackTimeouts {
				add("feedback timeout")
			}
			if c.DelayDecreases != prev.DelayDecreases || c.LossDecreases != prev.LossDecreases {
				add("decrease: delay %d loss %d", c.DelayDecreases-prev.DelayDecreases, c.LossDecreases-prev.LossDecreases)
			}
			prev = c
			if u := lastUpdate(sub, id); u != prevUpd {
				add("told %s (%s)", u.Layer, u.Reason)
				prevUpd = u
			}
			if s, _ := v.snapshot(); len(s) > len(prevSizes) {
				add("keyframes %v", s[len(prevSizes):])
				prevSizes = s
			}
		}
	}()
	return tl
}

// end stops the recorder (once) and returns its lines.
func (tl *timeline) end() string {
	tl.once.Do(func() { close(tl.stop) })
	<-tl.done
	tl.mu.Lock()
	defer tl.mu.Unlock()
	return strings.Join(tl.lines, "\n")
}
