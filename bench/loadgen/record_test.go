package loadgen

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/starling-rtc/starling/auth"
)

func TestAPIBase(t *testing.T) {
	for in, want := range map[string]string{
		"ws://127.0.0.1:7900/v1/rtc":  "http://127.0.0.1:7900",
		"wss://localhost:8443/v1/rtc": "https://localhost:8443",
		"ws://[::1]:7900/v1/rtc":      "http://[::1]:7900",
	} {
		c := Config{URL: in}
		if got, err := c.apiBase(); err != nil || got != want {
			t.Errorf("apiBase(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	c := Config{URL: "ws://127.0.0.1:1/v1/rtc", APIURL: "http://127.0.0.1:2/"}
	if got, _ := c.apiBase(); got != "http://127.0.0.1:2" {
		t.Errorf("explicit API URL: %q", got)
	}
}

func TestMintToken(t *testing.T) {
	c := Config{Duration: 1}
	if tok, err := c.mintToken("x", auth.Grants{Room: "r"}); tok != "" || err != nil {
		t.Fatalf("open server: token %q, %v", tok, err)
	}
	keys := NewKeys()
	if errs := keys.Check(); len(errs) > 0 {
		t.Fatalf("NewKeys: %v", errs)
	}
	parsed, err := auth.ParseKeys(FormatKeys(keys))
	if err != nil || len(parsed) != 1 {
		t.Fatalf("FormatKeys round trip: %v %v", parsed, err)
	}
	c.Keys = keys
	tok, err := c.mintToken("pub-0-0", auth.Grants{Room: "load-1", Record: true})
	if err != nil {
		t.Fatal(err)
	}
	claims, perr := auth.NewVerifier(parsed).Verify(tok)
	if perr != nil {
		t.Fatal(perr)
	}
	if claims.Identity() != "pub-0-0" || claims.Grants.Room != "load-1" || !claims.Grants.Record {
		t.Fatalf("claims %+v", claims)
	}
}

func TestDirSizeAndManifest(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "a.webm"), make([]byte, 1000), 0o644); err != nil {
		t.Fatal(err)
	}
	man := `{"duration_ms": 5012, "tracks": [
	  {"kind": "video", "frames": 150, "dropped_packets": 3, "dropped_frames": 2},
	  {"kind": "audio", "frames": 250}]}` + "\n      \n"
	if err := os.WriteFile(filepath.Join(dir, "manifest.json"), []byte(man), 0o644); err != nil {
		t.Fatal(err)
	}
	n, err := dirSize(dir)
	if err != nil || n != int64(1000+len(man)) {
		t.Fatalf("dirSize = %d, %v", n, err)
	}
	st := RecordingStats{LocalDir: dir, StartStatus: 201, Status: "finished", Files: 2, Bytes: n}
	st.readManifest()
	if st.DurationMs != 5012 || st.VideoFrames != 150 || st.AudioFrames != 250 || st.DroppedPackets != 3 || st.DroppedFrames != 2 {
		t.Fatalf("manifest figures %+v", st)
	}
	if !st.OK() {
		t.Fatal("a finished recording with files is OK")
	}
	for _, bad := range []RecordingStats{
		{StartStatus: 409, Status: "finished", Files: 1, Bytes: 1},
		{StartStatus: 201, Status: "failed", Files: 1, Bytes: 1},
		{StartStatus: 201, Status: "finished", Files: 0, Bytes: 1},
		{StartStatus: 201, Status: "finished", Files: 1, Bytes: 0},
	} {
		if bad.OK() {
			t.Errorf("%+v is OK", bad)
		}
	}
	if (&RecordingStats{StartStatus: 201, Status: "finished", Files: 1, Bytes: -1}).OK() != true {
		t.Error("unknown size (folder not visible) is not a failure")
	}
	if (&recordings{cfg: &Config{}}).localDir(filepath.Join(dir, "missing")) != "" {
		t.Error("a missing folder was found")
	}
}
