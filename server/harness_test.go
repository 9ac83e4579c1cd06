package server_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"flag"
	"net"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
	"github.com/starling-rtc/starling/client"
	"github.com/starling-rtc/starling/config"
	"github.com/starling-rtc/starling/internal/testutil"
	"github.com/starling-rtc/starling/internal/testutil/testnode"
	"github.com/starling-rtc/starling/protocol"
	"github.com/starling-rtc/starling/server"
)

// startServer runs a node on loopback with free ports.
func startServer(t testing.TB, tune func(*config.Config)) *server.Server {
	t.Helper()
	cfg := testnode.Config()
	cfg.Room.EmptyTimeout = config.Duration(100 * time.Millisecond)
	// A starved machine (CI under -race, load 30) can take seconds to
	// answer a subscriber offer; a client closed for that fails a test
	// about something else ("publisher offer: websocket: close sent").
	// The timeout's own test (badinput_test.go) sets 5 s.
	cfg.Room.NegotiationTimeout = config.Duration(30 * time.Second)
	// Bandwidth allocation reacts to a CPU-starved machine as to a congested
	// network (delay grows), and may lower or pause video in tests that are
	// about something else. Its own tests (congestion_test.go) turn it on;
	// cmd/starling's binary test runs the default configuration.
	cfg.RTC.CongestionControl = false
	// A client that drops its socket is gone after 1 s, not the default 30 s
	// resume window (resume_test.go sets its own).
	cfg.Room.ResumeWindow = config.Duration(time.Second)
	if tune != nil {
		tune(&cfg)
	}
	return testnode.Start(t, cfg)
}

// join connects a Go client over loopback; generous: on a machine loaded
// 30 deep under -race, a join and its first publisher offer took over 10 s.
func join(t testing.TB, srv *server.Server, room, name string, opts ...func(*client.Options)) *client.Client {
	t.Helper()
	return testutil.Join(t, srv.SignalingURL(), room, name, 30*time.Second, opts...)
}

var ctxT = testutil.Ctx

// fakeMedia publishes synthetic VP8 video (30 fps, 3 packets per frame,
// keyframes on PLI) and Opus audio (50 packets/s), recording every payload.
type fakeMedia struct {
	video, audio *webrtc.TrackLocalStaticRTP
	mu           sync.Mutex
	sentVideo    [][]byte
	sentAudio    [][]byte
	videoLimit   int // under mu: stop the video after this many packets (0: never)
	plis         atomic.Int32
	lastPLI      atomic.Int64
	wantKey      atomic.Bool
	stop         chan struct{}
	wg           sync.WaitGroup
	published    []client.Published
	tolerant     bool // keep sending through write errors
}

func publishFake(t testing.TB, c *client.Client) *fakeMedia {
	t.Helper()
	return publishFakeMedia(t, c, false)
}

// publishTolerant is publishFake that keeps sending through write errors
// (during an ICE restart pion has no path for a moment and says so).
func publishTolerant(t testing.TB, c *client.Client) *fakeMedia {
	t.Helper()
	return publishFakeMedia(t, c, true)
}

func publishFakeMedia(t testing.TB, c *client.Client, tolerant bool) *fakeMedia {
	t.Helper()
	video := testutil.VP8RTPTrack(t)
	audio := testutil.OpusRTPTrack(t)
	f := &fakeMedia{video: video, audio: audio, stop: make(chan struct{}), tolerant: tolerant}
	f.wantKey.Store(true)
	onPLI := func() {
		f.plis.Add(1)
		f.lastPLI.Store(time.Now().UnixNano())
		f.wantKey.Store(true)
	}
	pubs, err := c.Publish(ctxT(t, 10*time.Second),
		client.LocalTrack{Track: video, Source: protocol.SourceCamera, Name: "camera", OnKeyframeRequest: onPLI},
		client.LocalTrack{Track: audio, Source: protocol.SourceMicrophone, Name: "mic"})
	if err != nil {
		t.Fatalf("publish: %v", err)
	}
	if len(pubs) != 2 {
		t.Fatalf("published %d tracks, want 2", len(pubs))
	}
	f.published = pubs
	f.wg.Add(2)
	go f.sendVideo()
	go f.sendAudio()
	testutil.Cleanup(t, f.Stop)
	return f
}

func (f *fakeMedia) track(kind string) client.Published {
	for _, p := range f.published {
		if p.Kind == kind {
			return p
		}
	}
	return client.Published{}
}

// Stop stops sending; idempotent.
func (f *fakeMedia) Stop() {
	select {
	case <-f.stop:
	default:
		close(f.stop)
	}
	f.wg.Wait()
}

func (f *fakeMedia) sendVideo() {
	defer f.wg.Done()
	tick := time.NewTicker(33 * time.Millisecond)
	defer tick.Stop()
	seq, pid := uint16(65000), uint16(32700) // wrap early
	var ts uint32 = 4294967000
	for frame := 0; ; frame++ {
		select {
		case <-f.stop:
			return
		case <-tick.C:
		}
		key := f.wantKey.Swap(false)
		for part := 0; part < 3; part++ {
			payload := vp8Payload(pid, part == 0, key, frame, part)
			pkt := &rtp.Packet{Header: rtp.Header{Version: 2, Marker: part == 2, SequenceNumber: seq, Timestamp: ts}, Payload: payload}
			f.mu.Lock()
			if f.videoLimit > 0 && len(f.sentVideo) >= f.videoLimit {
				f.mu.Unlock()
				return
			}
			f.sentVideo = append(f.sentVideo, payload)
			f.mu.Unlock()
			if err := f.video.WriteRTP(pkt); err != nil && !f.tolerant {
				return
			}
			seq++
		}
		pid = (pid + 1) & 0x7fff
		ts += 3000
	}
}

func (f *fakeMedia) sendAudio() {
	defer f.wg.Done()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	seq := uint16(100)
	var ts uint32 = 12345
	for n := 0; ; n++ {
		select {
		case <-f.stop:
			return
		case <-tick.C:
		}
		payload := make([]byte, 60)
		payload[0] = 0x78 // Opus TOC: CELT FB 20 ms
		binary.BigEndian.PutUint32(payload[1:], uint32(n))
		pkt := &rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: seq, Timestamp: ts}, Payload: payload}
		f.mu.Lock()
		f.sentAudio = append(f.sentAudio, payload)
		f.mu.Unlock()
		if err := f.audio.WriteRTP(pkt); err != nil && !f.tolerant {
			return
		}
		seq++
		ts += 960
	}
}

// vp8Payload builds a VP8 RTP payload with a 15-bit picture id; the first
// packet of a keyframe carries a real 640x360 keyframe header.
func vp8Payload(pid uint16, first, key bool, frame, part int) []byte {
	b := []byte{0x80, 0x80, 0x80 | byte(pid>>8), byte(pid)}
	if first {
		b[0] |= 0x10
		if key {
			// frame tag (P=0, show_frame), start code, 14-bit width and height
			b = append(b, 0x10, 0x02, 0x00, 0x9d, 0x01, 0x2a, 0x80, 0x02, 0x68, 0x01)
		} else {
			b = append(b, 0x11, 0x02, 0x00)
		}
	}
	for i := 0; i < 200; i++ {
		b = append(b, byte(frame*7+part*3+i))
	}
	return b
}

// recorder collects the payloads a subscriber receives per track.
type recorder struct {
	mu     sync.Mutex
	got    map[string][][]byte // by track id
	owners map[string]string   // track id -> participant id
	first  map[string]time.Time
}

// repairWake is how often a recorder's idle track read wakes up to take a
// retransmission pion has queued.
const repairWake = 100 * time.Millisecond

func record(c *client.Client) *recorder {
	r := &recorder{got: map[string][][]byte{}, owners: map[string]string{}, first: map[string]time.Time{}}
	c.OnTrack(func(rt *client.RemoteTrack) {
		r.mu.Lock()
		r.owners[rt.TrackID] = rt.ParticipantID
		r.mu.Unlock()
		go func() {
			for {
				// pion returns a retransmission (RTX) from Read only when
				// called, and Read blocks on the media stream: a repair that
				// arrives after the last media packet would stay queued for
				// ever. A read deadline wakes Read now and then so it does
				// (the server's receivers do the same on a repair,
				// sfu/repairwake.go).
				_ = rt.Track.SetReadDeadline(time.Now().Add(repairWake))
				pkt, _, err := rt.Track.ReadRTP()
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					continue
				}
				if err != nil {
					return
				}
				if len(pkt.Payload) == 0 {
					continue // a padding-only probe, which receivers discard
				}
				r.mu.Lock()
				if _, ok := r.first[rt.TrackID]; !ok {
					r.first[rt.TrackID] = time.Now()
				}
				r.got[rt.TrackID] = append(r.got[rt.TrackID], append([]byte(nil), pkt.Payload...))
				r.mu.Unlock()
			}
		}()
	})
	return r
}

func (r *recorder) payloads(trackID string) [][]byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([][]byte(nil), r.got[trackID]...)
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	if !waitUntil(d, cond) {
		t.Fatalf("timed out after %v waiting for %s", d, what)
	}
}

// waitUntil polls cond until it holds (true) or d has passed (false), for
// callers that say themselves what was missing.
func waitUntil(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
	return true
}

// assertRun checks got is, packet for packet, a contiguous run of sent.
func assertRun(t testing.TB, who string, sent, got [][]byte) {
	t.Helper()
	if len(got) == 0 {
		t.Fatalf("%s received nothing", who)
	}
	start := -1
	for i := range sent {
		if bytes.Equal(sent[i], got[0]) {
			start = i
			break
		}
	}
	if start < 0 {
		t.Fatalf("%s: first received payload was never sent", who)
	}
	for i, p := range got {
		if start+i >= len(sent) || !bytes.Equal(sent[start+i], p) {
			was := -1
			for k := range sent {
				if bytes.Equal(sent[k], p) {
					was = k
					break
				}
			}
			t.Fatalf("%s: packet %d of %d differs from sent packet %d (lost, reordered or altered): it is sent packet %d (-1: never sent); %d sent",
				who, i, len(got), start+i, was, len(sent))
		}
	}
}

// waitStill waits until count stops changing for a whole second (what
// should stop, e.g. forwarding after a mute) and returns its final value;
// it fails if count is still changing after 15 s. Packets already in
// flight when the change took effect may land late on a busy machine: a
// fixed sleep followed by a comparison would fail on them, this waits them
// out, and still catches a flow that never stops.
func waitStill(t testing.TB, what string, count func() int) int {
	t.Helper()
	const quiet = time.Second
	deadline := time.Now().Add(15 * time.Second)
	last, since := count(), time.Now()
	for {
		time.Sleep(20 * time.Millisecond)
		n := count()
		if n != last {
			last, since = n, time.Now()
		} else if time.Since(since) >= quiet {
			return n
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: still changing after 15 s (now %d)", what, n)
		}
	}
}

// waitLastPayload waits until got() ends with the last payload of sent:
// every packet sent before a Stop has arrived (what a fixed "let the last
// packets land" sleep hoped for).
func waitLastPayload(t testing.TB, what string, sent [][]byte, got func() [][]byte) {
	t.Helper()
	if len(sent) == 0 {
		return
	}
	want := sent[len(sent)-1]
	waitFor(t, 10*time.Second, what+" to receive the last packet sent", func() bool {
		g := got()
		return len(g) > 0 && bytes.Equal(g[len(g)-1], want)
	})
}

// waitDataChannel waits until c has the server's `data` channel open on its
// subscriber connection: what a data message relayed to c travels on.
// (The subscriber connection being "connected" says nothing about SCTP.)
func waitDataChannel(t testing.TB, c *client.Client) {
	t.Helper()
	waitDataChannelOn(t, c.ParticipantID()+"'s data channel from the server", c.Subscriber())
}

// waitDataChannelOn waits until pc has an open data channel.
func waitDataChannelOn(t testing.TB, what string, pc *webrtc.PeerConnection) {
	t.Helper()
	waitFor(t, 15*time.Second, what, func() bool {
		for _, s := range pc.GetStats() {
			if d, ok := s.(webrtc.DataChannelStats); ok && d.State == webrtc.DataChannelStateOpen {
				return true
			}
		}
		return false
	})
}

// syncData makes sure from's messages reach got (the receiver's OnData
// channel), then empties got up to a fence: a message sent last, after
// which nothing of the warm-up can still arrive (one sender's messages are
// relayed in order on reliable, ordered channels). Replaces "send until one
// arrives, sleep, drain", where a late warm-up message could land after the
// drain.
func syncData(t testing.TB, from *client.Client, got <-chan protocol.DataMessage) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for arrived := false; !arrived; {
		if err := from.SendData(ctxT(t, 10*time.Second), "warm-up"); err != nil {
			t.Fatal(err)
		}
		select {
		case m := <-got:
			arrived = m.From == from.ParticipantID()
		case <-time.After(200 * time.Millisecond):
		}
		if !arrived && time.Now().After(deadline) {
			t.Fatalf("%s's data messages never arrived", from.ParticipantID())
		}
	}
	fence := "fence-" + from.ParticipantID() + "-" + time.Now().Format(time.RFC3339Nano)
	if err := from.SendData(ctxT(t, 10*time.Second), fence); err != nil {
		t.Fatal(err)
	}
	timeout := time.After(10 * time.Second)
	for {
		select {
		case m := <-got:
			if m.From == from.ParticipantID() && m.Payload == fence {
				return
			}
		case <-timeout:
			t.Fatalf("%s's fence message never arrived", from.ParticipantID())
		}
	}
}

// waitCoverage waits (up to 10 s) until got() covers at least ratio of
// sent, minus the last tail packets (see packetCoverage), and returns the
// coverage then: retransmissions and the last packets land when they land.
// The caller asserts on what it returns.
func waitCoverage(sent [][]byte, got func() [][]byte, tail int, ratio float64) (received, expected int) {
	deadline := time.Now().Add(10 * time.Second)
	for {
		received, expected = packetCoverage(sent, got(), tail)
		if float64(received) >= ratio*float64(expected) || time.Now().After(deadline) {
			return received, expected
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// defaultParallel is how many of this package's tests run at once unless
// -test.parallel is given. Its tests mostly wait on media paced in real
// time (30 fps video, 20 ms audio, ICE and RTCP timers), not on the CPU:
// GOMAXPROCS (go test's default, 2 on the CI machine) left the package at
// about four minutes of mostly idle waiting. Under the race detector the
// same tests need several times the CPU, and congestion control reads a
// starved CPU as a congested network: fewer at once.
//
// Light tests only: timing-judging ones run apart from them
// (sched_test.go).
func defaultParallel() int {
	if raceEnabled {
		return 4
	}
	return 12
}

// setDefaultParallel applies defaultParallel; call it from TestMain. The
// number of tests running at once is the scheduler's (sched_test.go):
// -test.parallel, or defaultParallel when not given, is its capacity.
// Without -race go test's own limit is raised out of its way: every test
// waits in the scheduler, which starts the long and the timing-judging
// ones first (a test waiting there would otherwise hold one of go test's
// places). Under -race, where the scheduler only counts, go test's limit
// stays, which also bounds parallel subtests as before.
func setDefaultParallel() {
	flag.Parse()
	given := false
	flag.Visit(func(f *flag.Flag) { given = given || f.Name == "test.parallel" })
	capacity := max(defaultParallel(), runtime.GOMAXPROCS(0))
	if given {
		capacity, _ = strconv.Atoi(flag.Lookup("test.parallel").Value.String())
	}
	sched = newScheduler(max(capacity, 1))
	if raceEnabled {
		_ = flag.Set("test.parallel", strconv.Itoa(capacity))
	} else {
		_ = flag.Set("test.parallel", "1000")
	}
}
