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
