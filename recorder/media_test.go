package recorder

import (
	"errors"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
	"github.com/pion/webrtc/v4/pkg/media/h264reader"
	"github.com/starling-rtc/starling/sfu"
)

// quiet discards the recorder's logs in tests.
var quiet = slog.New(slog.DiscardHandler)

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
	f.sinks = sfu.WithoutSink(f.sinks, s)
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
