package recorder

import (
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"
	"github.com/starling-rtc/starling/protocol"
	"github.com/starling-rtc/starling/room"
)

// A recording stopped while a track is being added to it ends: Stop used
// to wait forever for a track whose recorder was created after Stop had
// collected the ones to close (seen as TestAutoRecordStoppedStaysStopped
// hanging, its stop racing the auto-recording's second track).
func TestStopWhileAddingTrack(t *testing.T) {
	t.Parallel()
	for i := 0; i < 50; i++ {
		r, err := NewRoomRecorder(RoomOptions{Dir: filepath.Join(t.TempDir(), "rec"), Room: "race", Logger: quiet})
		if err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		for k, kind := range []string{"video", "audio"} {
			mime, clock, ch := webrtc.MimeTypeVP8, uint32(90000), uint16(0)
			if kind == "audio" {
				mime, clock, ch = webrtc.MimeTypeOpus, 48000, 2
			}
			id := fmt.Sprintf("TR_race%d", k)
			wg.Add(1)
			go func() {
				defer wg.Done()
				_ = r.AddTrack(room.PublishedTrack{Room: "race", ParticipantID: "PA_a", ParticipantName: "a",
					Track: protocol.Track{ID: id, Kind: kind}, Source: newFakeSource(id, mime, clock, ch)})
			}()
		}
		stopped := make(chan struct{})
		go func() { r.Stop(); close(stopped) }()
		select {
		case <-stopped:
		case <-time.After(20 * time.Second):
			t.Fatalf("round %d: Stop did not return while tracks were being added", i)
		}
		wg.Wait()
	}
}
