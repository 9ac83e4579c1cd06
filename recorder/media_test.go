package recorder

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
	"github.com/pion/webrtc/v4/pkg/media/h264reader"
	"github.com/pion/webrtc/v4/pkg/media/ivfreader"
	"github.com/pion/webrtc/v4/pkg/media/oggreader"
	"github.com/starling-rtc/starling/sfu"
)

// quiet discards the recorder's logs in tests.
var quiet = slog.New(slog.DiscardHandler)

// requireTool skips a test when an external tool is missing, except in CI
// (CI=true), where a missing tool is a failure: CI must install ffmpeg.
func requireTool(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s not found: CI must install ffmpeg (apt-get install ffmpeg)", name)
		}
		t.Skipf("%s not installed: skipping (apt-get install ffmpeg to run this test)", name)
	}
	return p
}

type probeStream struct {
	CodecName    string `json:"codec_name"`
	CodecType    string `json:"codec_type"`
	Width        int    `json:"width"`
	Height       int    `json:"height"`
	NbReadFrames string `json:"nb_read_frames"`
}

type probeResult struct {
	Streams []probeStream `json:"streams"`
	Format  struct {
		Duration string `json:"duration"`
	} `json:"format"`
}

func (p probeResult) duration() float64 {
	d, _ := strconv.ParseFloat(p.Format.Duration, 64)
	return d
}

func (s probeStream) frames() int {
	n, _ := strconv.Atoi(s.NbReadFrames)
	return n
}

// ffprobe reads a file with ffprobe, counting frames by decoding.
func ffprobe(t testing.TB, path string) probeResult {
	t.Helper()
	requireTool(t, "ffprobe")
	out, err := exec.Command("ffprobe", "-v", "error", "-count_frames", "-show_entries",
		"stream=codec_name,codec_type,width,height,nb_read_frames:format=duration", "-of", "json", path).Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Fatalf("ffprobe %s: %v: %s", path, err, ee.Stderr)
		}
		t.Fatalf("ffprobe %s: %v", path, err)
	}
	var r probeResult
	if err := json.Unmarshal(out, &r); err != nil {
		t.Fatalf("ffprobe output: %v", err)
	}
	return r
}

// decodeErrors decodes a whole file and returns what ffmpeg printed at
// level error (nothing for a clean file).
func decodeErrors(t testing.TB, path string) string {
	t.Helper()
	requireTool(t, "ffmpeg")
	out, _ := exec.Command("ffmpeg", "-nostdin", "-v", "error", "-i", path, "-f", "null", "-").CombinedOutput()
	return strings.TrimSpace(string(out))
}

// loadIVF reads the frames of an IVF file (VP8, VP9, AV1).
func loadIVF(t testing.TB, path string) [][]byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, _, err := ivfreader.NewWith(f)
	if err != nil {
		t.Fatal(err)
	}
	var frames [][]byte
	for {
		fr, _, err := r.ParseNextFrame()
		if errors.Is(err, io.EOF) {
			return frames
		}
		if err != nil {
			t.Fatal(err)
		}
		frames = append(frames, fr)
	}
}

// loadOgg reads the Opus packets of an Ogg file written one packet per
// page (ffmpeg -page_duration 20000).
func loadOgg(t testing.TB, path string) [][]byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, _, err := oggreader.NewWith(f)
	if err != nil {
		t.Fatal(err)
	}
	var pkts [][]byte
	for {
		p, _, err := r.ParseNextPage()
		if errors.Is(err, io.EOF) {
			return pkts
		}
		if err != nil {
			t.Fatal(err)
		}
		if bytes.HasPrefix(p, []byte("OpusTags")) {
			continue
		}
		pkts = append(pkts, p)
	}
}

// loadH264 reads an Annex B stream into access units (NALs up to a slice).
func loadH264(t testing.TB, path string) [][]byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, err := h264reader.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	var aus [][]byte
	var cur []byte
	for {
		nal, err := r.NextNAL()
		if errors.Is(err, io.EOF) {
			return aus
		}
		if err != nil {
			t.Fatal(err)
		}
		cur = append(cur, 0, 0, 0, 1)
		cur = append(cur, nal.Data...)
		if nal.UnitType == h264reader.NalUnitTypeCodedSliceIdr || nal.UnitType == h264reader.NalUnitTypeCodedSliceNonIdr {
			aus = append(aus, cur)
			cur = nil
		}
	}
}

// fakeSource is an sfu.Source fed by the test.
type fakeSource struct {
	id     string
	codec  webrtc.RTPCodecParameters
	kind   webrtc.RTPCodecType
	layers uint8
	mu     sync.Mutex
	sinks  []sfu.Sink
	plis   atomic.Int32
	onPLI  func(layer int8)
}

func newFakeSource(id, mime string, clock uint32, channels uint16) *fakeSource {
	kind := webrtc.RTPCodecTypeVideo
	if strings.HasPrefix(mime, "audio/") {
		kind = webrtc.RTPCodecTypeAudio
	}
	return &fakeSource{id: id, kind: kind, layers: 1,
		codec: webrtc.RTPCodecParameters{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: mime, ClockRate: clock, Channels: channels}}}
}

func (f *fakeSource) ID() string                       { return f.id }
func (f *fakeSource) Kind() webrtc.RTPCodecType        { return f.kind }
func (f *fakeSource) Codec() webrtc.RTPCodecParameters { return f.codec }
func (f *fakeSource) Layers() uint8                    { return f.layers }
func (f *fakeSource) LiveLayers() uint8                { return f.layers }
func (f *fakeSource) PacketTime() int64                { return time.Now().UnixNano() }
func (f *fakeSource) AddSink(s sfu.Sink) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.sinks = append(f.sinks, s)
}

func (f *fakeSource) RemoveSink(s sfu.Sink) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i, x := range f.sinks {
		if x == s {
			f.sinks = append(f.sinks[:i], f.sinks[i+1:]...)
			return
		}
	}
}

func (f *fakeSource) RequestKeyframe(layer int8) {
	f.plis.Add(1)
	if f.onPLI != nil {
		f.onPLI(layer)
	}
}

func (f *fakeSource) write(p *rtp.Packet, layer int8) {
	f.mu.Lock()
	sinks := append([]sfu.Sink(nil), f.sinks...)
	f.mu.Unlock()
	for _, s := range sinks {
		_ = s.WriteRTP(&p.Header, p.Payload, layer)
	}
}
