package server_test

import (
	"bytes"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/interceptor"
)

// TestRepairAfterLastPacket: the publisher's packet next to its last one
// is lost on the way to the SFU, then the publisher stops sending video.
// The SFU's NACK brings the retransmission after the last media packet,
// and the subscriber gets it. pion delivers a publisher's retransmission
// (its RTX stream) from the media stream's Read, which waits for the next
// media packet: without the server's repair wake (sfu/repairwake.go) this
// packet stayed in pion's queue for good. That is how
// TestLossRecoveryUpstream lost packets near the end of its stream, about
// one run in three on a loaded machine.
func TestRepairAfterLastPacket(t *testing.T) {
	parallel(t)
	srv := startServer(t, nil)
	const roomName = "repair-last"
	sub := join(t, srv, roomName, "sub")
	rec := record(sub)
	var target atomic.Int32 // the media seq to drop once, +1; 0: none yet
	loss := newLossInjector(0, lossOutgoing, 1, isVideoMime)
	loss.pick = func(seq uint16, rtx bool) bool { return !rtx && int32(seq)+1 == target.Load() }
	pub := join(t, srv, roomName, "pub", withClientAPI(faultAPI(t, apiOptions{first: []interceptor.Factory{loss}})))
	media := publishFake(t, pub)
	video := media.track("video")
	waitFor(t, 15*time.Second, "video at the subscriber", func() bool { return len(rec.payloads(video.ID)) > 30 })

	// The middle packet of the next frame is dropped; the frame's last
	// packet (after which the SFU sees the gap) is the last sent.
	media.mu.Lock()
	i := len(media.sentVideo)
	for i%3 != 1 {
		i++
	}
	target.Store(int32(uint16(65000+i)) + 1) // the fake camera's first seq is 65000
	media.videoLimit = i + 2
	media.mu.Unlock()
	waitFor(t, 15*time.Second, "the publisher's last video packet", func() bool {
		media.mu.Lock()
		defer media.mu.Unlock()
		return len(media.sentVideo) == i+2
	})
	media.mu.Lock()
	lost, last := media.sentVideo[i], media.sentVideo[i+1]
	media.mu.Unlock()

	has := func(p []byte) bool {
		for _, q := range rec.payloads(video.ID) {
			if bytes.Equal(p, q) {
				return true
			}
		}
		return false
	}
	waitFor(t, 15*time.Second, "the last video packet at the subscriber", func() bool { return has(last) })
	if !waitUntil(15*time.Second, func() bool { return has(lost) }) {
		t.Fatalf("the packet lost before the publisher's last one never reached the subscriber (%s)", loss.story(lost))
	}
	t.Logf("repaired after the last packet: %s", loss.story(lost))
}
