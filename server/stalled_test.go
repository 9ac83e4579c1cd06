package server_test

import (
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/starling-rtc/starling/client"
	"github.com/starling-rtc/starling/config"
	"github.com/starling-rtc/starling/protocol"
)

// arrivals records a subscriber's payloads per track with arrival times.
type arrivals struct {
	mu   sync.Mutex
	got  map[string][][]byte
	when map[string][]time.Time
}

func recordArrivals(c *client.Client) *arrivals {
	a := &arrivals{got: map[string][][]byte{}, when: map[string][]time.Time{}}
	c.OnTrack(func(rt *client.RemoteTrack) {
		go func() {
			for {
				pkt, _, err := rt.Track.ReadRTP()
				if err != nil {
					return
				}
				a.mu.Lock()
				a.got[rt.TrackID] = append(a.got[rt.TrackID], append([]byte(nil), pkt.Payload...))
				a.when[rt.TrackID] = append(a.when[rt.TrackID], time.Now())
				a.mu.Unlock()
			}
		}()
	})
	return a
}

func (a *arrivals) payloads(id string) [][]byte {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([][]byte(nil), a.got[id]...)
}

// maxGap is the longest silence between packets of a track after t0.
func (a *arrivals) maxGap(id string, t0 time.Time) time.Duration {
	a.mu.Lock()
	defer a.mu.Unlock()
	var gap time.Duration
	ts := a.when[id]
	for i := 1; i < len(ts); i++ {
		if ts[i].After(t0) {
			gap = max(gap, ts[i].Sub(ts[i-1]))
		}
	}
	return gap
}

// TestStalledSubscribersDoNotSlowOthers: in one room, a subscriber that
// never reads what it receives and one that closes its connections
// abruptly (no `leave`, socket kept) cost the others nothing: a third
// subscriber gets every packet, in order, without a stall. The one whose
// connection closed is removed at once, and everyone is told.
func TestStalledSubscribersDoNotSlowOthers(t *testing.T) {
	// Timing: gaps over a second fail it (1.8 s seen with twelve light
	// tests around it on a machine loaded 30 deep).
	timingTest(t)
	srv := startServer(t, nil)
	const roomName = "stalled"
	good := join(t, srv, roomName, "good")
	goodRec := recordArrivals(good)
	frozen := join(t, srv, roomName, "frozen")
	frozenTracks := make(chan *client.RemoteTrack, 4)
	frozen.OnTrack(func(rt *client.RemoteTrack) { frozenTracks <- rt }) // and never reads
	gone := join(t, srv, roomName, "gone")
	goneRec := record(gone)
	pub := join(t, srv, roomName, "pub")
	media := publishFake(t, pub)
	video, audio := media.track("video"), media.track("audio")
	waitFor(t, 15*time.Second, "media at the subscribers", func() bool {
		return len(goodRec.payloads(video.ID)) > 60 && len(goneRec.payloads(video.ID)) > 60 && len(frozenTracks) == 2
	})

	// The gone subscriber's process dies without a word: its connections
	// close (DTLS close_notify) but its signaling socket stays.
	cut := time.Now()
	stalled := meterMediaStalls(t)
	_ = gone.Subscriber().Close()
	_ = gone.Publisher().Close()
	goneID := gone.ParticipantID()
	if _, err := good.WaitEvent(ctxT(t, 10*time.Second), protocol.NotifyParticipantLeft, hasParam("participantId", goneID)); err != nil {
		t.Fatalf("the participant whose connections closed was not removed: %v", err)
	}
	t.Logf("the closed subscriber was removed %v after its connections closed", time.Since(cut).Round(time.Millisecond))
	if _, err := gone.WaitEvent(ctxT(t, 5*time.Second), protocol.MethodLeave, nil); err != nil {
		t.Errorf("the removed participant was not sent leave: %v", err)
	}

	time.Sleep(3 * time.Second) // the frozen subscriber's buffers are long full by now
	media.Stop()
	media.mu.Lock()
	sentVideo, sentAudio := media.sentVideo, media.sentAudio
	media.mu.Unlock()
	waitLastPayload(t, "the good subscriber's video", sentVideo, func() [][]byte { return goodRec.payloads(video.ID) })
	waitLastPayload(t, "the good subscriber's audio", sentAudio, func() [][]byte { return goodRec.payloads(audio.ID) })
	vRecv, vWant := packetCoverage(sentVideo, goodRec.payloads(video.ID), 0)
	aRecv, aWant := packetCoverage(sentAudio, goodRec.payloads(audio.ID), 0)
	vGap, aGap := goodRec.maxGap(video.ID, cut), goodRec.maxGap(audio.ID, cut)
	stall := stalled()
	t.Logf("good subscriber: video %d/%d, audio %d/%d; longest gap after the cut: video %v, audio %v; this process's longest stall %v",
		vRecv, vWant, aRecv, aWant, vGap.Round(time.Millisecond), aGap.Round(time.Millisecond), stall.Round(time.Millisecond))
	assertRun(t, "good subscriber video", sentVideo, goodRec.payloads(video.ID))
	assertRun(t, "good subscriber audio", sentAudio, goodRec.payloads(audio.ID))
	// A fan-out that waited on the frozen subscriber would stall the others
	// for good (it never reads) or for a write timeout (seconds); a busy
	// machine delays single packets by a few hundred ms (seen with the suite
	// in parallel and other builds running), and stops this whole process
	// for more (gaps of 1.2-1.3 s in audio and video at once beside two
	// busy loops): the gap beyond the process's own longest stall is judged.
	if vGap-stall > time.Second || aGap-stall > time.Second {
		t.Errorf("the good subscriber's media stalled: gaps of %v (video) and %v (audio), %v beyond this process's longest stall",
			vGap, aGap, max(vGap, aGap)-stall)
	}
	if srv.Rooms().Room(roomName) == nil || len(srv.Rooms().Room(roomName).Participants()) != 3 {
		t.Errorf("want good, frozen and pub left in the room")
	}
}

// TestSilentSubscriberRemoved: a subscriber whose media path dies silently
// (no close_notify, no packets, signaling socket still up) is removed once
// ICE gives up on it. The shortest rtc.ice_failed_timeout (6 s) keeps the
// wait short; the default (30 s) is the same path, only longer.
func TestSilentSubscriberRemoved(t *testing.T) {
	parallelLong(t)
	srv := startServer(t, func(c *config.Config) { c.RTC.ICEFailedTimeout = config.Duration(6 * time.Second) })
	const roomName = "silent"
	good := join(t, srv, roomName, "good")
	silent := join(t, srv, roomName, "silent")
	silentRec := record(silent)
	pub := join(t, srv, roomName, "pub")
	media := publishFake(t, pub)
	video := media.track("video")
	waitFor(t, 15*time.Second, "media at the subscriber", func() bool { return len(silentRec.payloads(video.ID)) > 30 })
	// Stop the client's ICE agents: no more STUN answers, no DTLS alert.
	cut := time.Now()
	if err := silent.Subscriber().SCTP().Transport().ICETransport().Stop(); err != nil {
		t.Fatal(err)
	}
	if err := silent.Publisher().SCTP().Transport().ICETransport().Stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := good.WaitEvent(ctxT(t, 45*time.Second), protocol.NotifyParticipantLeft, hasParam("participantId", silent.ParticipantID())); err != nil {
		t.Fatalf("the silent subscriber was not removed: %v", err)
	}
	t.Logf("the silent subscriber was removed %v after its media path died", time.Since(cut).Round(time.Second))
}

// meterMediaStalls measures, until the returned function is called, how
// long this process was kept from running its media: the longest silence,
// beyond its 10 ms period, of a stream of loopback datagrams the process
// sends itself (a few ms on an idle machine). The datagrams take the path
// media takes into a goroutine: a send, the kernel, the runtime's network
// poller, a reader woken by it. A ticker's lateness (meterStalls, which
// this test used before) read far less than that path suffered on a
// starved machine: the runtime runs a goroutine its timer wakes next on
// the same processor, while one the poller wakes waits its turn behind
// the runnable ones, and the poller is looked at mostly when a processor
// runs out of work. Beside two busy loops (load 35-48) the ticker read
// 225 ms while loopback datagrams arrived 410 ms late and the server's
// own reads from the publisher stopped for 616 ms; in a run where the
// good subscriber's media stopped 2.3 s, the publisher's writes, the
// server's reads, the down tracks' writes and the client's reads all
// stopped at once (1.5, 1.9, 1.9 and 2.3 s) while the ticker read 662 ms
// (docs/suite-load.md). The server is not on the meter's path, so a
// fan-out waiting on the frozen subscriber still shows in full. The
// returned function stops the meter and gives that silence.
func meterMediaStalls(t *testing.T) func() time.Duration {
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	var worst atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { // the sender
		defer wg.Done()
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		to := conn.LocalAddr().(*net.UDPAddr)
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				_, _ = conn.WriteToUDP([]byte{1}, to)
			}
		}
	}()
	go func() { // the reader: ends when the socket closes
		defer wg.Done()
		var b [1]byte
		last := time.Now()
		for {
			if _, _, err := conn.ReadFromUDP(b[:]); err != nil {
				return
			}
			now := time.Now()
			if late := int64(now.Sub(last) - 10*time.Millisecond); late > worst.Load() {
				worst.Store(late)
			}
			last = now
		}
	}()
	var once sync.Once
	finish := func() time.Duration {
		once.Do(func() { close(stop); _ = conn.Close(); wg.Wait() })
		return time.Duration(worst.Load())
	}
	t.Cleanup(func() { finish() })
	return finish
}

// meterStalls measures, until the returned function is called, how long
// this process was kept from running at once: the longest lateness of a
// 10 ms ticker (a few ms on an idle machine). The returned function stops
// the meter and gives that.
func meterStalls(t *testing.T) func() time.Duration {
	var worst atomic.Int64
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		last := time.Now()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				now := time.Now()
				if late := int64(now.Sub(last) - 10*time.Millisecond); late > worst.Load() {
					worst.Store(late)
				}
				last = now
			}
		}
	}()
	var once sync.Once
	finish := func() time.Duration {
		once.Do(func() { close(stop); <-done })
		return time.Duration(worst.Load())
	}
	t.Cleanup(func() { finish() })
	return finish
}
