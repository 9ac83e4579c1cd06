package cluster_test

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
	"github.com/starling-rtc/starling/client"
	"github.com/starling-rtc/starling/protocol"
)

// A simulcast camera published without layer sizes (a WHIP client cannot
// give them) gets them from its keyframes on its own node; a viewer on
// another node who capped it at 640 wide before the sizes were known went
// on getting high there: the sizes reached that node with trackUpdated,
// but its subscribers' caps were not computed again.
func TestRemoteViewerCapFollowsLearnedSizes(t *testing.T) {
	parallel(t)
	srvs := startCluster(t, 2, nil)
	const room = "learned-sizes"
	alice := join(t, srvs[0], room, "alice")
	bob := join(t, srvs[1], room, "bob")
	seeEachOther(t, alice, bob)

	sim, err := client.NewSimulcastTrack(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}, "cam", "cam", "q", "h", "f")
	if err != nil {
		t.Fatal(err)
	}
	var sized, wantKey atomic.Bool // sized: keyframes carry their size (a VP8 start code)
	pubs, err := alice.Publish(ctxT(t, 15*time.Second), client.LocalTrack{
		Simulcast: sim, Source: protocol.SourceCamera, OnKeyframeRequest: func() { wantKey.Store(true) },
	})
	if err != nil || len(pubs) != 1 {
		t.Fatalf("publish: %v", err)
	}
	cam := pubs[0].ID
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(33 * time.Millisecond)
		defer tick.Stop()
		size := map[string][2]int{"q": {320, 180}, "h": {640, 360}, "f": {1280, 720}}
		seq := map[string]uint16{"q": 1, "h": 20000, "f": 40000}
		var ts uint32 = 1000
		var pid uint16 = 1
		for frame := 0; ; frame++ {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			key := wantKey.Swap(false) || frame%15 == 0
			for _, rid := range []string{"q", "h", "f"} {
				b := []byte{0x90, 0x80, 0x80 | byte(pid>>8), byte(pid)}
				if w, h := size[rid][0], size[rid][1]; key && sized.Load() {
					b = append(b, 0x10, 0x02, 0x00, 0x9d, 0x01, 0x2a, byte(w), byte(w>>8), byte(h), byte(h>>8))
				} else if key {
					b = append(b, 0x10, 0x02, 0x00) // a keyframe whose size is not read
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
	t.Cleanup(func() { close(stop); <-done })

	got := countByTrack(bob)
	eventually(t, 20*time.Second, "bob receives alice's camera", func() bool { return got.count(cam) > 10 })
	if err := bob.Call(ctxT(t, 10*time.Second), protocol.MethodSetSubscription, protocol.SetSubscriptionParams{TrackID: cam, MaxWidth: ptrTo(640)}, nil); err != nil {
		t.Fatal(err)
	}
	eventually(t, 15*time.Second, "bob gets high while no size is known", func() bool { return lastLayer(bob, cam) == protocol.QualityHigh })
	sized.Store(true)
	eventually(t, 15*time.Second, "bob is moved to medium once the sizes are known", func() bool { return lastLayer(bob, cam) == protocol.QualityMedium })
}

func ptrTo[T any](v T) *T { return &v }
