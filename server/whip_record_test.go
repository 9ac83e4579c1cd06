package server_test

import (
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/starling-rtc/starling/config"
	"github.com/starling-rtc/starling/internal/testutil"
)

// The recorder sees a WHIP publisher's tracks as any other: a room
// recording holds its audio and video, and ffprobe decodes the video.
func TestWHIPRecorded(t *testing.T) {
	parallel(t)
	m := makeTestMedia(t)
	dir := t.TempDir()
	srv := startServer(t, func(c *config.Config) { c.Recordings.Dir = dir })
	watcher := join(t, srv, "recwhip", "watcher")
	publishWHIP(t, srv, "recwhip", "?name=obs", "", m, nil)
	for i := 0; i < 2; i++ {
		if _, err := watcher.WaitEvent(ctxT(t, 10*time.Second), "trackPublished", func(json.RawMessage) bool { return true }); err != nil {
			t.Fatal(err)
		}
	}
	url := "http://" + srv.Addr() + "/v1/rooms/recwhip/recordings"
	call := func(method, url string) (int, map[string]any) {
		t.Helper()
		req, _ := http.NewRequest(method, url, strings.NewReader("{}"))
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		body, _ := io.ReadAll(res.Body)
		var out map[string]any
		_ = json.Unmarshal(body, &out)
		return res.StatusCode, out
	}
	code, started := call(http.MethodPost, url)
	if code != http.StatusCreated {
		t.Fatalf("start recording: %d %v", code, started)
	}
	recDir, _ := started["dir"].(string)
	waitFor(t, 20*time.Second, "100 kB recorded", func() bool {
		var total int64
		_ = filepath.Walk(recDir, func(_ string, info os.FileInfo, err error) error {
			if err == nil && !info.IsDir() {
				total += info.Size()
			}
			return nil
		})
		return total > 100_000
	})
	code, stopped := call(http.MethodDelete, url+"/"+started["id"].(string))
	if code != http.StatusOK || stopped["status"] != "finished" {
		t.Fatalf("stop: %d %v", code, stopped)
	}
	files, _ := stopped["files"].([]any)
	if len(files) != 2 {
		t.Fatalf("recorded %d files, want the WHIP audio and video: %v", len(files), stopped)
	}
	decoded := 0
	for _, f := range files {
		decoded += testutil.DecodedFrames(t, f.(string))
	}
	if decoded < 60 {
		t.Errorf("ffprobe decoded %d frames from the recording of the WHIP publisher, want >= 60", decoded)
	}
}
