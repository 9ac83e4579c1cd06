package server_test

import (
	"bytes"
	"sync"
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

// TestLateRepairForwarded: a video packet lost on the way to the SFU is
// repaired only once the publisher has sent lateBy more packets (the test
// holds the publisher's resend until then), as on a starved machine:
// TestLossRecoveryUpstream under load got a repair 3 s late. The
// subscriber, like a browser, has stopped asking for the packet by then.
// The SFU forwards the repair, and the subscriber gets it: not on the
// media stream, where a packet that far behind is older than the
// subscriber's SRTP replay window (pion's default is 64 packets) and
// dropped as a replay, but on the subscriber's RTX stream
// (docs/robustness.md, "Late repairs").
func TestLateRepairForwarded(t *testing.T) {
	parallel(t)
	// ~1.7 s of the fake camera: the subscriber (10 NACKs, one per 100 ms)
	// has given the packet up, and it is far past any replay window.
	const lateBy = 150
	srv := startServer(t, nil)
	const roomName = "repair-late"
	sub := join(t, srv, roomName, "sub", withClientAPI(faultAPI(t, apiOptions{maxNACKs: 10})))
	rec := record(sub)
	var target atomic.Int32 // the media seq to repair late, +1; 0: none yet
	release := make(chan struct{})
	var released sync.Once
	loss := newLossInjector(0, lossOutgoing, 1, isVideoMime)
	loss.pick = func(seq uint16, rtx bool) bool {
		tg := target.Load()
		if tg == 0 {
			return false
		}
		lost := uint16(tg - 1)
		if !rtx && int16(seq-lost) >= lateBy {
			released.Do(func() { close(release) })
		}
		if seq != lost {
			return false
		}
		if rtx {
			// pion resends on a goroutine of its own per NACK: holding
			// it holds nothing else.
			<-release
		}
		return !rtx // the first sending is lost, the resend goes through
	}
	pub := join(t, srv, roomName, "pub", withClientAPI(faultAPI(t, apiOptions{first: []interceptor.Factory{loss}})))
	media := publishFake(t, pub)
	t.Cleanup(func() { released.Do(func() { close(release) }) })
	video := media.track("video")
	waitFor(t, 15*time.Second, "video at the subscriber", func() bool { return len(rec.payloads(video.ID)) > 30 })

	// The middle packet of a frame a little ahead.
	media.mu.Lock()
	i := len(media.sentVideo) + 3
	for i%3 != 1 {
		i++
	}
	target.Store(int32(uint16(65000+i)) + 1) // the fake camera's first seq is 65000
	media.mu.Unlock()
	waitFor(t, 30*time.Second, "the publisher to send past the late repair", func() bool {
		media.mu.Lock()
		defer media.mu.Unlock()
		return len(media.sentVideo) > i+lateBy+30
	})
	media.mu.Lock()
	lost, after := media.sentVideo[i], media.sentVideo[i+lateBy+30]
	media.mu.Unlock()
	has := func(p []byte) bool {
		for _, q := range rec.payloads(video.ID) {
			if bytes.Equal(p, q) {
				return true
			}
		}
		return false
	}
	waitFor(t, 15*time.Second, "the subscriber to get the packets after the late repair", func() bool { return has(after) })
	if !waitUntil(15*time.Second, func() bool { return has(lost) }) {
		t.Fatalf("the subscriber never got the packet repaired %d packets late (%s)", lateBy, loss.story(lost))
	}
	t.Logf("repaired late: %s", loss.story(lost))
}
