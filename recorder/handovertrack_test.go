package recorder

import (
	"path/filepath"
	"testing"

	"github.com/pion/rtp"
	"github.com/pion/rtp/codecs"
	"github.com/pion/webrtc/v4"
	"github.com/starling-rtc/starling/internal/testutil"
	"github.com/starling-rtc/starling/protocol"
	"github.com/starling-rtc/starling/room"
)

// A track handed over while a room recording records it (its participant
// resumed through this node: the room unpublishes the old source, the
// import from the node it left, and publishes the same id with its new
// source at once, room/handover.go) goes on being recorded from the new
// source, as a second part. The old part's stop ran on its own goroutine
// and the new source, arriving before that stop had ended, was taken for
// a repeat and ignored: the participant was never recorded again
// (TestRecordingNodeKilled under load, alice resuming after the new
// node's recording had started).
func TestHandedOverTrackRecordedFromNewSource(t *testing.T) {
	t.Parallel()
	frames := testutil.ReadOgg(t, filepath.Join("testdata", "audio.ogg"))
	if len(frames) < 60 {
		t.Fatalf("%d frames in the test audio, want 60", len(frames))
	}
	pay := func() rtp.Payloader { return &codecs.OpusPayloader{} }
	for round := 0; round < 5; round++ {
		r, err := NewRoomRecorder(RoomOptions{Dir: filepath.Join(t.TempDir(), "rec"), Room: "moved", Logger: quiet})
		if err != nil {
			t.Fatal(err)
		}
		pt := func(src *fakeSource, node string, handedOver bool) room.PublishedTrack {
			return room.PublishedTrack{Room: "moved", ParticipantID: "PA_alice", ParticipantName: "alice",
				Track: protocol.Track{ID: "TR_mic", Kind: "audio"}, Source: src, Node: node, HandedOver: handedOver}
		}
		old := newFakeSource("TR_mic", webrtc.MimeTypeOpus, 48000, 2)
		if err := r.AddTrack(pt(old, "n2", false)); err != nil {
			t.Fatal(err)
		}
		feedFrames(old, pay(), 48000, 960, frames[:30], nil)
		// As room.spliceTrackLocked tells the observers: gone, then back.
		r.RemoveTrack("TR_mic")
		moved := newFakeSource("TR_mic", webrtc.MimeTypeOpus, 48000, 2)
		if err := r.AddTrack(pt(moved, "", true)); err != nil {
			t.Fatal(err)
		}
		moved.mu.Lock()
		sinks := len(moved.sinks)
		moved.mu.Unlock()
		if sinks != 1 {
			r.Stop()
			t.Fatalf("round %d: the handed-over track's new source has %d sinks, want the recording's", round, sinks)
		}
		feedFrames(moved, pay(), 48000, 960, frames[30:60], nil)
		m := r.Stop()
		var parts []int
		for _, tr := range m.Tracks {
			parts = append(parts, tr.Frames)
		}
		if len(parts) != 2 || parts[0] < 25 || parts[1] < 25 {
			t.Fatalf("round %d: the recording's parts of the track hold %v frames, want two of about 30 (before and after the handover)", round, parts)
		}
	}
}
