package server_test

import (
	"testing"
	"time"

	"github.com/starling-rtc/starling/protocol"
)

// TestSimulcastKeyframeOnRequest: a simulcast publisher whose encoder sends
// a keyframe only when asked, on the layer asked for (as a browser's does,
// beyond its rare periodic ones). A subscriber moved from layer to layer
// gets each one: the server's request reaches the Go client's
// OnLayerKeyframeRequest with the layer's rid. The client used to read the
// first encoding's RTCP only (pion's RTPSender.ReadRTCP), so requests for
// the medium and high layers were never heard and a switch up waited for a
// periodic keyframe, here for ever.
func TestSimulcastKeyframeOnRequest(t *testing.T) {
	parallel(t)
	srv := startServer(t, nil)
	sub := join(t, srv, "simkey", "viewer")
	v := watchVideo(sub)
	pub := join(t, srv, "simkey", "camera")
	f := startSimulcast(t, pub, vp8Sim, true)
	id := f.published.ID
	if _, err := sub.WaitEvent(ctxT(t, 20*time.Second), protocol.NotifyTrackPublished, nil); err != nil {
		t.Fatal(err)
	}
	setSub(t, sub, protocol.SetSubscriptionParams{TrackID: id, MaxHeight: intp(180)})
	v.waitHeight(t, 20*time.Second, 180)
	for _, h := range []int{360, 720, 180, 720} {
		setSub(t, sub, protocol.SetSubscriptionParams{TrackID: id, MaxHeight: intp(h)})
		d := v.waitHeight(t, 20*time.Second, h)
		t.Logf("switch to %dp: %v", h, d)
	}
}
