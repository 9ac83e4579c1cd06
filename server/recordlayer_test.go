package server_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/starling-rtc/starling/config"
	"github.com/starling-rtc/starling/protocol"
)

// TestRecordingWantsBestLayer: a recording counts as a viewer that wants
// the best layer. With every viewer watching a simulcast camera as a
// thumbnail, the publisher sends only its low layer; once a recording of
// the room starts, it is asked for every layer again and the recording
// moves up to the top one; when the recording stops, the top layers go off
// again (issue 17, defect 5: recordings stayed at 320x180).
func TestRecordingWantsBestLayer(t *testing.T) {
	parallel(t)
	dir := t.TempDir()
	srv := startServer(t, func(c *config.Config) { c.Recordings.Dir = dir })
	viewer := join(t, srv, "rec-layer", "viewer")
	pub := join(t, srv, "rec-layer", "camera")
	f := publishSimulcast(t, pub)
	id := f.published.ID
	if _, err := viewer.WaitEvent(ctxT(t, 10*time.Second), protocol.NotifyTrackPublished, nil); err != nil {
		t.Fatal(err)
	}
	setSub(t, viewer, protocol.SetSubscriptionParams{TrackID: id, Quality: ptr(protocol.QualityLow)})
	waitFor(t, 10*time.Second, "the publisher told to send only low", func() bool {
		return f.sim.Active("q") && !f.sim.Active("h") && !f.sim.Active("f")
	})

	base := "/v1/rooms/rec-layer/recordings"
	var started struct{ ID, Dir string }
	if code := httpJSON(t, "POST", srv.Addr(), base, "", `{}`, &started); code != http.StatusCreated {
		t.Fatalf("start the recording: HTTP %d", code)
	}
	waitFor(t, 10*time.Second, "the publisher told to send every layer for the recording", func() bool {
		return f.sim.Active("q") && f.sim.Active("h") && f.sim.Active("f")
	})
	// The fake's keyframes carry their size: wait until the file holds one
	// of the top layer's (the recorder flushes at least every second).
	top := []byte{0x9d, 0x01, 0x2a, byte(1280 & 0xff), byte(1280 >> 8), byte(720 & 0xff), byte(720 >> 8)}
	waitFor(t, 15*time.Second, "a 1280x720 keyframe in the recording", func() bool {
		files, _ := filepath.Glob(filepath.Join(started.Dir, "*"))
		for _, name := range files {
			if b, err := os.ReadFile(name); err == nil && bytes.Contains(b, top) {
				return true
			}
		}
		return false
	})
	var info struct {
		Status   string
		Manifest string
	}
	if code := httpJSON(t, "DELETE", srv.Addr(), base+"/"+started.ID, "", "", &info); code != http.StatusOK || info.Status != "finished" {
		t.Fatalf("stop the recording: HTTP %d, status %q", code, info.Status)
	}
	waitFor(t, 10*time.Second, "the top layers off again once the recording stopped", func() bool {
		return f.sim.Active("q") && !f.sim.Active("h") && !f.sim.Active("f")
	})
	raw, err := os.ReadFile(info.Manifest)
	if err != nil {
		t.Fatal(err)
	}
	var m struct {
		Tracks []struct {
			Kind          string `json:"kind"`
			Width, Height int
			LayerSwitches int `json:"layer_switches"`
		} `json:"tracks"`
	}
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatalf("manifest: %v", err)
	}
	for _, tr := range m.Tracks {
		if tr.Kind == "video" {
			t.Logf("recorded video: first keyframe %dx%d, %d layer switch(es)", tr.Width, tr.Height, tr.LayerSwitches)
		}
	}
}
