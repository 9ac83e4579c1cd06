package room

import (
	"testing"

	"github.com/starling-rtc/starling/protocol"
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
