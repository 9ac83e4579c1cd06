package cluster_test

import (
	"context"
	"encoding/json"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
	"github.com/starling-rtc/starling/client"
	"github.com/starling-rtc/starling/protocol"
	"github.com/starling-rtc/starling/server"
)

// TestTakeoverKeepsSubscriptions: carol (n1, autoSubscribe off) subscribed
// by hand to one of alice's two simulcast cameras (n0) and capped it to
// low quality. Her node goes away (killed, or drained); she resumes through
// n2, which has none of n1's state: she keeps exactly that subscription
// and that cap (her client re-sends them with the resume), and its media
// reaches her again.
func TestTakeoverKeepsSubscriptions(t *testing.T) {
	t.Parallel() // no place of its own: each subtest takes one
	for _, how := range []string{"killed", "drained"} {
		t.Run(how, func(t *testing.T) {
			parallel(t)
			takeoverKeepsSubscriptions(t, how)
		})
	}
}

func takeoverKeepsSubscriptions(t *testing.T, how string) {
	srvs := failoverCluster(t)
	const room = "subs-restore"
	alice := join(t, srvs[0], room, "alice")
	off := false
	carol := join(t, srvs[1], room, "carol", withNodes(srvs[2]), func(o *client.Options) { o.AutoSubscribe = &off })
	seeEachOther(t, alice, carol)
	camA := publishSimulcastCam(t, alice, "camA")
	camB := publishSimulcastCam(t, alice, "camB")
	got := countByTrack(carol)

	ctx := ctxT(t, 20*time.Second)
	for _, cam := range []string{camA, camB} {
		if _, err := carol.WaitEvent(ctx, protocol.NotifyTrackPublished, func(raw json.RawMessage) bool {
			var p protocol.TrackParams
			return json.Unmarshal(raw, &p) == nil && p.Track.ID == cam
		}); err != nil {
			t.Fatalf("carol is not told about %s: %v", cam, err)
		}
	}
	if err := carol.Call(ctx, protocol.MethodSubscribe, protocol.TrackIDsParams{TrackIDs: []string{camA}}, nil); err != nil {
		t.Fatalf("subscribe: %v", err)
	}
	low := protocol.QualityLow
	if err := carol.Call(ctx, protocol.MethodSetSubscription, protocol.SetSubscriptionParams{TrackID: camA, Quality: &low}, nil); err != nil {
		t.Fatalf("setSubscription: %v", err)
	}
	id := carol.ParticipantID()
	wantOnlyLowA := func(s *server.Server) func() bool {
		return func() bool {
			subs, caps := subscriptionsOn(s, room, id)
			return len(subs) == 1 && subs[0] == camA && caps[camA] == 0
		}
	}
	eventually(t, 20*time.Second, "carol receives camA capped to low on n1", func() bool {
		return wantOnlyLowA(srvs[1])() && got.count(camA) > 10
	})

	switch how {
	case "killed":
		srvs[1].Abort()
	case "drained":
		dctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if left := srvs[1].Drain(dctx); left != 0 {
			t.Fatalf("%d participants left on the drained node", left)
		}
	}
	if _, err := carol.WaitEvent(ctxT(t, 30*time.Second), client.EventResumed, nil); err != nil {
		t.Fatalf("carol does not resume: %v (events %v)", err, eventMethods(carol.Events()))
	}
	if carol.URL() != srvs[2].SignalingURL() || !carol.LastJoin().NewConnections || carol.ParticipantID() != id {
		t.Fatalf("carol resumed through %s as %s (newConnections %v), want n2 as %s", carol.URL(), carol.ParticipantID(),
			carol.LastJoin().NewConnections, id)
	}
	before := got.count(camA)
	eventually(t, 20*time.Second, "carol receives camA again on n2, capped to low, and nothing else", func() bool {
		return wantOnlyLowA(srvs[2])() && got.count(camA) > before+10
	})
	if n := got.count(camB); n != 0 {
		t.Fatalf("carol received %d packets of camB, which she never subscribed to", n)
	}
}

// subscriptionsOn lists a participant's subscriptions on node s (sorted
// track ids) with the layer each is capped to.
func subscriptionsOn(s *server.Server, roomName, id string) ([]string, map[string]int8) {
	r := s.Rooms().Room(roomName)
	if r == nil {
		return nil, nil
	}
	p := r.Participant(id)
	if p == nil || p.Remote() != "" {
		return nil, nil
	}
	var ids []string
	caps := map[string]int8{}
	for _, sub := range p.Subscriptions() {
		ids = append(ids, sub.TrackID)
		caps[sub.TrackID], _ = sub.Down.Limits()
	}
	sort.Strings(ids)
	return ids, caps
}

// publishSimulcastCam publishes a VP8 camera in three layers (q, h, f)
// and sends it until the test ends; it returns the server's track id.
func publishSimulcastCam(t *testing.T, c *client.Client, name string) string {
	t.Helper()
	sim, err := client.NewSimulcastTrack(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}, name, name, "q", "h", "f")
	if err != nil {
		t.Fatal(err)
	}
	var key sync.Map // rid -> wants a keyframe
	pubs, err := c.Publish(ctxT(t, 15*time.Second), client.LocalTrack{
		Simulcast: sim, Source: protocol.SourceCamera, Name: name,
		Layers: []protocol.LayerHint{{RID: "q", Width: 320, Height: 180}, {RID: "h", Width: 640, Height: 360}, {RID: "f", Width: 1280, Height: 720}},
		OnKeyframeRequest: func() {
			for _, rid := range []string{"q", "h", "f"} {
				key.Store(rid, true)
			}
		},
	})
	if err != nil || len(pubs) != 1 {
		t.Fatalf("publish %s: %v", name, err)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(33 * time.Millisecond)
		defer tick.Stop()
		seq := map[string]uint16{"q": 1, "h": 20000, "f": 40000}
		var ts uint32 = 1000
		var pid uint16 = 1
		for frame := 0; ; frame++ {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			for _, rid := range []string{"q", "h", "f"} {
				k, _ := key.LoadAndDelete(rid)
				b := []byte{0x90, 0x80, 0x80 | byte(pid>>8), byte(pid)}
				if k == true || frame%30 == 0 {
					b = append(b, 0x10, 0x02, 0x00, 0x9d, 0x01, 0x2a, 0x80, 0x02, 0x68, 0x01)
				} else {
					b = append(b, 0x11, 0x00, 0x00)
				}
				b = append(b, make([]byte, 100)...)
				_ = sim.WriteRTP(rid, &rtp.Packet{Header: rtp.Header{Version: 2, Marker: true, SequenceNumber: seq[rid], Timestamp: ts}, Payload: b})
				seq[rid]++
			}
			pid = (pid + 1) & 0x7fff
			ts += 3000
		}
	}()
	t.Cleanup(func() { close(stop); wg.Wait() })
	return pubs[0].ID
}

// countTracks counts the RTP packets a client receives, by track id.
type countTracks struct {
	mu sync.Mutex
	n  map[string]int
}

func countByTrack(c *client.Client) *countTracks {
	r := &countTracks{n: map[string]int{}}
	c.OnTrack(func(rt *client.RemoteTrack) {
		go func() {
			for {
				if _, _, err := rt.Track.ReadRTP(); err != nil {
					return
				}
				r.mu.Lock()
				r.n[rt.TrackID]++
				r.mu.Unlock()
			}
		}()
	})
	return r
}

func (r *countTracks) count(id string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.n[id]
}
