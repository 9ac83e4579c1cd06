package room

import (
	"testing"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/starling-rtc/starling/protocol"
	"github.com/starling-rtc/starling/sfu"
)

// TestPriorityOrder: screen share, then the active speaker, then size.
func TestPriorityOrder(t *testing.T) {
	screen := &Track{info: protocol.Track{Source: protocol.SourceScreen}}
	camera := &Track{info: protocol.Track{Source: protocol.SourceCamera}}
	if !(screen.priority(0, false) > camera.priority(2, true)) {
		t.Fatal("a screen share must come before the active speaker's camera")
	}
	if !(camera.priority(0, true) > camera.priority(2, false)) {
		t.Fatal("the active speaker's camera must come before a bigger tile")
	}
	if !(camera.priority(2, false) > camera.priority(0, false)) {
		t.Fatal("a bigger requested size must come first among equals")
	}
}

// remoteSource stands for a remote track's import (cluster/relay.Import):
// layers present and live, measured rates.
type remoteSource struct{ sfu.Source }

func (remoteSource) Layers() uint8     { return 1 }
func (remoteSource) LiveLayers() uint8 { return 1 }
func (remoteSource) Bitrate(layer int8) uint64 {
	if layer == 0 {
		return 400_000
	}
	return 0
}

// TestRemoteTrackLayerCosts: a track published on another node is priced
// from its import. With no local receiver its costs were all zero, so the
// allocator found no layer to give it and paused cross-node video for
// "bandwidth" as soon as the subscriber reported loss (seen with aiortc
// subscribers on a second node, congestion control on).
func TestRemoteTrackLayerCosts(t *testing.T) {
	tr := &Track{kind: webrtc.RTPCodecTypeVideo, info: protocol.Track{Layers: []protocol.Layer{}}}
	tr.imp.src = remoteSource{}
	c := tr.layerCosts()
	if c[0] != 440_000 || c[1] != 0 || c[2] != 0 {
		t.Fatalf("a remote track's layer costs are %v, want [440000 0 0] (its measured 400 kb/s plus 10%%)", c)
	}
	if got := sfu.Allocate(1_000_000, []sfu.Demand{{Cap: 2, Costs: c, Current: 0}}); got[0] != 0 {
		t.Fatalf("1 Mb/s allocates layer %d to a remote track, want 0", got[0])
	}
}

// TestLayerCostsDoNotAllocate: pricing a track's layers, done for every
// video track in every allocation round (two a second per subscriber),
// allocates nothing.
func TestLayerCostsDoNotAllocate(t *testing.T) {
	tr := &Track{kind: webrtc.RTPCodecTypeVideo, info: protocol.Track{Layers: []protocol.Layer{
		{Width: 320, Height: 180}, {Width: 640, Height: 360}, {Width: 1280, Height: 720}}}}
	tr.imp.src = remoteSource{}
	c := tr.layerCosts()
	if c[0] != 440_000 || c[1] != sfu.DefaultLayerCost(1, 640, 360) || c[2] != sfu.DefaultLayerCost(2, 1280, 720) {
		t.Fatalf("layer costs %v: want the measured 400 kb/s plus 10%% for the live layer, the size-based estimate for the others", c)
	}
	if n := testing.AllocsPerRun(100, func() { tr.layerCosts() }); n != 0 {
		t.Fatalf("%.1f allocations per layerCosts", n)
	}
}

// TestProbeRateNextStep: a probe aims at the next layer up, not the top
// one. A track paused for bandwidth (costs 0.28 / 0.55 / 2.76 Mbit/s, the
// top layer priced from its size while the publisher has stopped it, one
// audio track) on a 150 kbit/s estimate was probed at 3.3 Mbit/s, 1.2 times
// the top layer; the next step is the lowest layer and the audio, 20% over.
func TestProbeRateNextStep(t *testing.T) {
	const audio = audioReserve
	if p := probeRate(150_000, audio, 0, 0, 275_000, 275_000); p != (275_000+audio)*12/10 {
		t.Fatalf("a paused track is probed at %d bit/s, want %d (its lowest layer and the audio, 20%% over)", p, (275_000+audio)*12/10)
	}
	// On the middle layer, the step to the top one is above the estimate:
	// still covered (else the track could never show it fits).
	if p := probeRate(700_000, audio, 550_000, 550_000, 1_210_000, 1_210_000); p < 1_210_000+audio {
		t.Fatalf("the step from 0.55 to 1.76 Mbit/s is probed at %d bit/s on a 0.7 Mbit/s estimate", p)
	}
	// Several tracks stepping at once: capped at the estimate (about twice
	// what flows with the media), but never under the smallest step.
	if p := probeRate(1_000_000, audio, 900_000, 900_000, 3_000_000, 300_000); p != 1_000_000 {
		t.Fatalf("three tracks' steps of 3 Mbit/s on a 1 Mbit/s estimate probed at %d bit/s, want the estimate", p)
	}
	if p := probeRate(1_000_000, audio, 900_000, 900_000, 0, 0); p != 0 {
		t.Fatalf("nothing to step up to, yet a probe at %d bit/s", p)
	}
	// A probe just opened the lowest layer of a paused track (allocated,
	// its keyframe not yet there: nothing flows); the next step's probe
	// comes at once, and its padding covers the layer that does not flow
	// yet as well as the step to the middle one.
	if p, want := probeRate(420_000, audio, 275_000, 0, 275_000, 275_000), uint64(275_000+275_000+audio)*12/10; p != want {
		t.Fatalf("the step to the middle layer, the lowest allocated but not flowing, probed at %d bit/s, want %d", p, want)
	}
}

// TestPausedProbeLength: a probe from a subscriber whose video is all
// paused lasts 150 ms, longer when that would carry under 20 padding
// packets (a cheap lowest layer), never over the usual 300 ms.
func TestPausedProbeLength(t *testing.T) {
	for _, c := range []struct {
		rate uint64
		want time.Duration
	}{{406_000, probePausedMin}, {200_000, 20 * 8 * sfu.PaddingWireSize * time.Second / 200_000}, {50_000, probeFor}} {
		if d := pausedProbe(c.rate); d != c.want {
			t.Errorf("a paused subscriber's probe at %d bit/s lasts %v, want %v", c.rate, d, c.want)
		}
	}
}

// stoppedTopSource is a receiver whose top layer the publisher has
// stopped (not live) after it flowed at 1.6 Mbit/s.
type stoppedTopSource struct{ remoteSource }

func (stoppedTopSource) LastBitrate(layer int8) uint64 {
	if layer == 2 {
		return 1_600_000
	}
	return 0
}

// TestStoppedLayerKeepsMeasuredCost: a stopped layer is priced at what it
// measured when it last flowed, not from its size (2.76 Mbit/s for 720p):
// a probe for it need not show more room than the layer needs.
func TestStoppedLayerKeepsMeasuredCost(t *testing.T) {
	tr := &Track{kind: webrtc.RTPCodecTypeVideo, info: protocol.Track{Layers: []protocol.Layer{
		{Width: 320, Height: 180}, {Width: 640, Height: 360}, {Width: 1280, Height: 720}}}}
	tr.imp.src = stoppedTopSource{}
	if c := tr.layerCosts(); c[2] != 1_760_000 {
		t.Fatalf("the stopped top layer costs %d, want its last measured 1.6 Mbit/s plus 10%% (the size-based guess is %d)",
			c[2], sfu.DefaultLayerCost(2, 1280, 720))
	}
}
