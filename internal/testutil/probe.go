package testutil

import (
	"encoding/json"
	"errors"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// Probe is what ffprobe says of a file's streams and format.
type Probe struct {
	Streams []ProbeStream `json:"streams"`
	Format  struct {
		Duration string `json:"duration"`
	} `json:"format"`
}

// ProbeStream is one stream of a Probe.
type ProbeStream struct {
	CodecName    string `json:"codec_name"`
	CodecType    string `json:"codec_type"`
	Width        int    `json:"width"`
	Height       int    `json:"height"`
	NbReadFrames string `json:"nb_read_frames"`
}

// Duration is the file's duration in seconds (0 if unknown).
func (p Probe) Duration() float64 {
	d, _ := strconv.ParseFloat(p.Format.Duration, 64)
	return d
}

// Frames is the number of frames ffprobe decoded from the stream.
func (s ProbeStream) Frames() int {
	n, _ := strconv.Atoi(s.NbReadFrames)
	return n
}

// FFprobe reads a file with ffprobe, counting frames by decoding them.
func FFprobe(t testing.TB, path string) Probe {
	t.Helper()
	RequireTool(t, "ffprobe")
	out, err := exec.Command("ffprobe", "-v", "error", "-count_frames", "-show_entries",
		"stream=codec_name,codec_type,width,height,nb_read_frames:format=duration", "-of", "json", path).Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Fatalf("ffprobe %s: %v: %s", path, err, ee.Stderr)
		}
		t.Fatalf("ffprobe %s: %v", path, err)
	}
	var r Probe
	if err := json.Unmarshal(out, &r); err != nil {
		t.Fatalf("ffprobe output: %v", err)
	}
	return r
}

// DecodedFrames runs ffmpeg's decoders over a file's first stream and
// counts the frames they decoded (video frames, or Opus packets).
func DecodedFrames(t testing.TB, path string) int {
	t.Helper()
	out, err := exec.Command("ffprobe", "-v", "error", "-count_frames", "-select_streams", "0",
		"-show_entries", "stream=codec_name,nb_read_frames", "-of", "csv=p=0", path).CombinedOutput()
	if err != nil {
		t.Fatalf("ffprobe %s: %v: %s", path, err, out)
	}
	fields := strings.Split(strings.TrimSpace(strings.Split(string(out), "\n")[0]), ",")
	n, err := strconv.Atoi(fields[len(fields)-1])
	if err != nil {
		t.Fatalf("ffprobe %s said %q", path, out)
	}
	t.Logf("%s: %s", filepath.Base(path), strings.TrimSpace(string(out)))
	return n
}

// DecodeErrors decodes a whole file and returns what ffmpeg printed at
// level error (nothing for a clean file).
func DecodeErrors(t testing.TB, path string) string {
	t.Helper()
	RequireTool(t, "ffmpeg")
	// -enc_time_base -1: the null output keeps the file's own time base
	// (WebM's milliseconds). By default it took the frame rate's (1/30 s),
	// and a file whose frames sit half a frame off that grid (a recording
	// after a layer switch, timed by arrival) rounded two frames onto one
	// tick: "non monotonically increasing dts to muxer" for every third
	// frame of a valid file (CI: TestTrackRecorderLayerHoles/top_gap).
	out, _ := exec.Command("ffmpeg", "-nostdin", "-v", "error", "-i", path, "-enc_time_base", "-1", "-f", "null", "-").CombinedOutput()
	return strings.TrimSpace(string(out))
}
