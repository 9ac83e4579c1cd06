package relay

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// TestRelayKeyframeRequest: the edge's keyframe requests reach the source
// as one PLI per layer per window, however many subscribers ask.
func TestRelayKeyframeRequest(t *testing.T) {
	origin, edge := pair(t)
	src := newFakeSource(webrtc.RTPCodecTypeVideo, 0b111)
	_, imp := exportImport(t, origin, edge, src, 0b111, "TR_x")
	for i := 0; i < 50; i++ {
		imp.RequestKeyframe(1)
	}
	select {
	case l := <-src.kf:
		if l != 1 {
			t.Fatalf("keyframe requested on layer %d, want 1", l)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the PLI did not reach the source")
	}
	if n := edge.Stats().PLIsOut; n != 1 {
		t.Fatalf("%d PLIs sent for 50 requests within the window, want 1", n)
	}
	imp.RequestKeyframe(-1) // every layer: 0 and 2 (1 is still throttled)
	got := map[int8]bool{}
	for len(got) < 2 {
		select {
		case l := <-src.kf:
			got[l] = true
		case <-time.After(10 * time.Second):
			t.Fatalf("keyframe requests for every layer: got %v", got)
		}
	}
	if !got[0] || !got[2] {
		t.Fatalf("got requests for %v, want layers 0 and 2", got)
	}
}

// clockSource is a fakeSource that knows its publisher's clock.
type clockSource struct {
	*fakeSource
	offset int64
}

func (c *clockSource) PublisherClockOffset() (int64, bool) { return c.offset, true }

// TestRelaySenderReports: the publisher's reports reach the edge's sinks,
// per layer, unchanged; the edge's publisher clock is the origin's plus the
// relay's (which is about zero on one machine).
func TestRelaySenderReports(t *testing.T) {
	origin, edge := pair(t)
	src := &clockSource{fakeSource: newFakeSource(webrtc.RTPCodecTypeVideo, 0b011), offset: 5 * int64(time.Second)}
	_, imp := exportImport(t, origin, edge, src, 0b001, "TR_x") // layer 1 not sent: its reports still are
	sink := recording(imp)
	src.emit(0, 1, 1, true, []byte("x")) // the import exists before the reports arrive
	recv(t, sink.pkts, 10*time.Second)
	want := []gotSR{{0, 0xe1a0_0000_8000_0000, 12345}, {1, 0xe1a0_0000_9000_0000, 67890}}
	for _, sr := range want {
		src.senderReport(sr.layer, sr.ntp, sr.ts)
	}
	for _, w := range want {
		select {
		case got := <-sink.srs:
			if got != w {
				t.Fatalf("sender report %+v, want %+v", got, w)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("the sender report did not reach the edge sink")
		}
	}
	off, ok := imp.PublisherClockOffset()
	if !ok {
		t.Fatal("no publisher clock on the edge")
	}
	if d := off - src.offset; d < 0 || d > int64(time.Second) {
		t.Fatalf("edge publisher clock offset %d, origin's %d: relay part %v", off, src.offset, time.Duration(d))
	}
}

// TestRelaySetLayers: only the chosen layers cross; turning one on asks
// the source for a keyframe on it.
func TestRelaySetLayers(t *testing.T) {
	origin, edge := pair(t)
	src := newFakeSource(webrtc.RTPCodecTypeVideo, 0b111)
	exp, imp := exportImport(t, origin, edge, src, 0b001, "TR_x")
	sink := recording(imp)
	seq := uint16(0)
	round := func() {
		seq++
		for l := int8(2); l >= 0; l-- { // layer 0 last: it marks the end of a round
			src.emit(l, seq, uint32(seq), false, []byte{byte(l), byte(seq)})
		}
	}
	// collect reads up to the layer-0 packet of round `until`.
	collect := func(until uint16) map[int8]int {
		got := map[int8]int{}
		for {
			p := recv(t, sink.pkts, 10*time.Second)
			got[p.layer]++
			if p.layer == 0 && p.seq == until {
				return got
			}
		}
	}
	for i := 0; i < 5; i++ {
		round()
	}
	if got := collect(seq); got[1] != 0 || got[2] != 0 || got[0] != 5 {
		t.Fatalf("mask 001: got %v", got)
	}
	exp.SetLayers(0b101)
	select {
	case l := <-src.kf:
		if l != 2 {
			t.Fatalf("keyframe asked on layer %d, want 2", l)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("turning layer 2 on did not ask for a keyframe")
	}
	for i := 0; i < 5; i++ {
		round()
	}
	if got := collect(seq); got[1] != 0 || got[2] != 5 || got[0] != 5 {
		t.Fatalf("mask 101: got %v", got)
	}
	exp.SetLayers(0b010)
	for i := 0; i < 5; i++ {
		round()
	}
	// No layer 0 any more: read the five layer-1 packets.
	for i := 0; i < 5; i++ {
		if p := recv(t, sink.pkts, 10*time.Second); p.layer != 1 {
			t.Fatalf("mask 010: got a layer %d packet", p.layer)
		}
	}
	if exp.DesiredLayer() != 1 {
		t.Fatalf("DesiredLayer %d with mask 010", exp.DesiredLayer())
	}
	// Layer 0 resumes after five packets that were not sent: the edge
	// must not take them for lost.
	exp.SetLayers(0b011)
	for i := 0; i < 5; i++ {
		round()
	}
	if got := collect(seq); got[0] != 5 || got[2] != 0 {
		t.Fatalf("mask 011: got %v", got)
	}
	if n := edge.Stats().NACKed; n != 0 {
		t.Fatalf("the edge NACKed %d packets the origin never sent", n)
	}
}

// TestRelayLayerWishes: the edge's sinks' wishes reach the origin in-band
// (dynacast across the relay), and the edge's liveness follows the origin.
func TestRelayLayerWishes(t *testing.T) {
	t.Parallel() // see main_test.go
	origin, edge := pair(t)
	src := newFakeSource(webrtc.RTPCodecTypeVideo, 0b111)
	exp, imp := exportImport(t, origin, edge, src, 0b111, "TR_x")
	w := &wanterSink{recSink: newRecSink()}
	w.desired.Store(0)
	imp.AddSink(w)
	eventually(t, "the wish for layer 0 only", func() bool { return exp.Layers() == 0b001 })
	eventually(t, "the origin's live layers on the edge", func() bool { return imp.LiveLayers() == 0b111 })
	w.desired.Store(2)
	eventually(t, "the wish for every layer", func() bool { return exp.Layers() == 0b111 })
	w.desired.Store(-1) // paused
	eventually(t, "no layer wanted", func() bool { return exp.Layers() == 0 })
	w.desired.Store(1)
	eventually(t, "layers 0 and 1 wanted", func() bool { return exp.Layers() == 0b011 })
	imp.RemoveSink(w) // the last subscriber here left
	eventually(t, "nothing wanted without sinks", func() bool { return exp.Layers() == 0 })
}

// TestRelayCloseAndPeers: closing an import closes its sinks; a source
// closing its sinks ends the export; a removed peer's imports close; calls
// with bad arguments fail clearly.
func TestRelayCloseAndPeers(t *testing.T) {
	origin, edge := pair(t)
	src := newFakeSource(webrtc.RTPCodecTypeVideo, 1)
	exp, imp := exportImport(t, origin, edge, src, 1, "TR_x")
	sink := recording(imp)
	imp.Close()
	select {
	case <-sink.closed:
	default:
		t.Fatal("closing the import did not close its sink")
	}
	exp.Close() // as a receiver closing its sinks does
	if src.sinkCount() != 0 || origin.Stats().Exports != 0 {
		t.Fatal("the export is still a sink of its source")
	}
	exp2, imp2 := exportImport(t, origin, edge, src, 1, "TR_x")
	if exp2.SSRCBase() == exp.SSRCBase() {
		t.Fatal("an SSRC base was reused")
	}
	sink2 := recording(imp2)
	edge.RemovePeer("node-a")
	select {
	case <-sink2.closed:
	default:
		t.Fatal("removing the peer did not close its imports")
	}
	if _, err := edge.Import("node-a", exp2.SSRCBase(), "x", webrtc.RTPCodecTypeVideo, src.Codec(), 1); err != ErrUnknownPeer {
		t.Fatalf("import from a removed peer: %v", err)
	}
	for _, c := range []struct {
		name string
		err  error
	}{
		{"self as peer", origin.AddPeer("node-a", "127.0.0.1:1")},
		{"no port", origin.AddPeer("node-c", "127.0.0.1")},
		{"wildcard", origin.AddPeer("node-c", "0.0.0.0:5000")},
		{"bad base", func() error {
			_, err := origin.Import("node-b", 7, "x", webrtc.RTPCodecTypeVideo, src.Codec(), 1)
			return err
		}()},
		{"duplicate import", func() error {
			if _, err := origin.Import("node-b", 400, "x", webrtc.RTPCodecTypeAudio, src.Codec(), 1); err != nil {
				return nil
			}
			_, err := origin.Import("node-b", 400, "x", webrtc.RTPCodecTypeAudio, src.Codec(), 1)
			return err
		}()},
	} {
		if c.err == nil {
			t.Errorf("%s: no error", c.name)
		}
	}
	if _, err := Listen("127.0.0.1:0", "n", nil); err == nil {
		t.Error("Listen without a secret: no error")
	}
	origin.Close()
	if _, err := origin.Export("node-b", src, 1); err != ErrClosed {
		t.Errorf("export on a closed transport: %v", err)
	}
}

// TestRelayPeerRestart: a node restarted with the same id (new epoch, new
// keys, new address) is relayed from again after AddPeer.
func TestRelayPeerRestart(t *testing.T) {
	origin, edge := pair(t)
	src := newFakeSource(webrtc.RTPCodecTypeAudio, 1)
	_, imp := exportImport(t, origin, edge, src, 1, "TR_x")
	sink := recording(imp)
	src.emit(0, 1, 1, false, []byte("before"))
	recv(t, sink.pkts, 10*time.Second)
	imp.Close()
	origin.Close()

	again := listen(t, "node-a", testSecret)
	introduce(t, again, edge)
	src2 := newFakeSource(webrtc.RTPCodecTypeAudio, 1)
	_, imp2 := exportImport(t, again, edge, src2, 1, "TR_x")
	sink2 := recording(imp2)
	// The first datagram under the new epoch derives the keys; later ones
	// wait for the trial gap to pass if it was refused.
	for i := uint16(0); ; i++ {
		src2.emit(0, i, 0, false, []byte("after"))
		select {
		case p := <-sink2.pkts:
			if string(p.payload) != "after" {
				t.Fatalf("got %q", p.payload)
			}
			return
		case <-time.After(20 * time.Millisecond):
		}
		if i > 500 {
			t.Fatal("nothing relayed from the restarted node")
		}
	}
}

// TestRelayEdgeLiveness: the edge's Layers, LiveLayers and PacketTime
// follow the origin: a layer the publisher stops is no longer live on the
// edge, one it resumes is again.
func TestRelayEdgeLiveness(t *testing.T) {
	t.Parallel() // see main_test.go
	origin, edge := pair(t)
	src := newFakeSource(webrtc.RTPCodecTypeVideo, 0b111)
	_, imp := exportImport(t, origin, edge, src, 0b111, "TR_x")
	var changes []uint8
	changed := make(chan uint8, 16)
	imp.OnLayersChanged(func(live uint8) { changed <- live })
	recording(imp)
	if imp.PacketTime() != 0 {
		t.Fatal("packet time before any packet")
	}
	seq := uint16(0)
	emit := func(layers uint8) {
		seq++
		for l := int8(0); l < 3; l++ {
			if layers&(1<<l) != 0 {
				src.emit(l, seq, uint32(seq)*3000, true, []byte{1})
			}
		}
	}
	// Live from the origin's status report or from packets: wait for both.
	eventually(t, "all layers live on the edge", func() bool {
		emit(0b111)
		return imp.LiveLayers() == 0b111 && imp.PacketTime() != 0
	})
	if imp.Layers() != 0b111 || imp.PacketTime() == 0 {
		t.Fatalf("layers %b, packet time %d", imp.Layers(), imp.PacketTime())
	}
	src.live.Store(0b001) // the publisher stopped its two upper layers
	eventually(t, "layers 1 and 2 no longer live on the edge", func() bool {
		emit(0b001)
		return imp.LiveLayers() == 0b001
	})
	src.live.Store(0b011)
	eventually(t, "layer 1 live again", func() bool { emit(0b011); return imp.LiveLayers() == 0b011 })
	for len(changed) > 0 {
		changes = append(changes, <-changed)
	}
	if len(changes) < 3 || changes[len(changes)-1] != 0b011 {
		t.Fatalf("OnLayersChanged saw %v", changes)
	}
}

// levelSource is an audio fakeSource whose publisher sends RFC 6464 audio
// levels under extension id 5.
type levelFake struct{ *fakeSource }

func (levelFake) AudioLevelExtensionID() uint8 { return 5 }

// TestRelayAudioLevels: the publisher's audio levels reach the edge, so
// its active speaker detection works on relayed tracks; the relay's own
// extensions never reach the sinks.
func TestRelayAudioLevels(t *testing.T) {
	origin, edge := pair(t)
	src := levelFake{newFakeSource(webrtc.RTPCodecTypeAudio, 1)}
	_, imp := exportImport(t, origin, edge, src, 1, "TR_a")
	ext := &extSink{recSink: newRecSink()}
	imp.AddSink(ext)
	for i := 0; i < 10; i++ {
		h := &rtp.Header{Version: 2, PayloadType: 111, SequenceNumber: uint16(i), Timestamp: uint32(i * 960), SSRC: 9}
		level := byte(20)
		if i%2 == 1 {
			level = 40
		}
		if err := h.SetExtension(5, []byte{0x80 | level}); err != nil {
			t.Fatal(err)
		}
		src.now.Store(time.Now().UnixNano())
		for _, s := range src.snapshot() {
			_ = s.WriteRTP(h, []byte("opus"), 0)
		}
	}
	for i := 0; i < 10; i++ {
		recv(t, ext.pkts, 10*time.Second)
	}
	db, n := imp.TakeAudioLevel()
	if n != 10 || db != 30 {
		t.Fatalf("edge audio level %.1f dB over %d packets, want 30 over 10", db, n)
	}
	if ext.withExt.Load() != 0 {
		t.Fatalf("%d packets reached a sink with the relay's header extensions", ext.withExt.Load())
	}
}

// extSink counts packets that arrive with header extensions.
type extSink struct {
	*recSink
	withExt atomic.Int32
}

func (e *extSink) WriteRTP(h *rtp.Header, payload []byte, layer int8) error {
	if h.Extension || len(h.Extensions) > 0 {
		e.withExt.Add(1)
	}
	return e.recSink.WriteRTP(h, payload, layer)
}

// TestRelayTimerSleepsWhileIdle: with nothing exported or imported, the
// transport's timer stops running (an idle node is not woken for it); the
// first export and import start it again, and the edge's liveness, which
// the timer computes, works as before.
func TestRelayTimerSleepsWhileIdle(t *testing.T) {
	t.Parallel() // see main_test.go
	origin, edge := pair(t)
	eventually(t, "the timers' first runs", func() bool { return origin.rounds.Load() > 0 && edge.rounds.Load() > 0 })
	o, e := origin.rounds.Load(), edge.rounds.Load()
	time.Sleep(3 * monitorEvery) // the timer ran every monitorEvery before
	if origin.rounds.Load() != o || edge.rounds.Load() != e {
		t.Fatalf("the idle timers ran %d and %d more times", origin.rounds.Load()-o, edge.rounds.Load()-e)
	}
	src := newFakeSource(webrtc.RTPCodecTypeVideo, 0b1)
	_, imp := exportImport(t, origin, edge, src, 0b1, "TR_idle")
	recording(imp)
	seq := uint16(0)
	eventually(t, "layer 0 live on the edge", func() bool {
		seq++
		src.emit(0, seq, uint32(seq)*3000, true, []byte{1})
		return imp.LiveLayers() == 0b1
	})
	if origin.rounds.Load() == o || edge.rounds.Load() == e {
		t.Fatal("the timers did not run again once a track crossed")
	}
}
