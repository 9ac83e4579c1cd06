package room

import (
	"testing"

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
