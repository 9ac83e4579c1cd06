package mixer

import (
	"fmt"
	"math"
	"sync"
	"testing"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
	"github.com/starling-rtc/starling/sfu"
	"github.com/thesyncim/gopus"
)

// fakeSource is a published track for tests: the test calls its sinks.
type fakeSource struct {
	id    string
	mu    sync.Mutex
	sinks []sfu.Sink
	now   int64
}

func (f *fakeSource) ID() string                       { return f.id }
func (f *fakeSource) Kind() webrtc.RTPCodecType        { return webrtc.RTPCodecTypeAudio }
func (f *fakeSource) Codec() webrtc.RTPCodecParameters { return OpusCodec }
func (f *fakeSource) AddSink(s sfu.Sink)               { f.mu.Lock(); f.sinks = append(f.sinks, s); f.mu.Unlock() }
func (f *fakeSource) RemoveSink(sfu.Sink)              {}
func (f *fakeSource) RequestKeyframe(int8)             {}
func (f *fakeSource) Layers() uint8                    { return 1 }
func (f *fakeSource) LiveLayers() uint8                { return 1 }
func (f *fakeSource) PacketTime() int64                { return f.now }

func (f *fakeSource) write(hdr *rtp.Header, payload []byte) {
	for _, s := range f.sinks {
		_ = s.WriteRTP(hdr, payload, 0)
	}
}

// countSink counts what an output sends.
type countSink struct{ packets, bytes int }

func (c *countSink) WriteRTP(_ *rtp.Header, p []byte, _ int8) error {
	c.packets++
	c.bytes += len(p)
	return nil
}
func (c *countSink) OnSenderReport(int8, uint64, uint32) {}
func (c *countSink) Close()                              {}

// toneFrames encodes n 20 ms frames of a sine tone.
func toneFrames(tb testing.TB, freq, amp float64, n int) [][]byte {
	enc, err := gopus.NewEncoder(gopus.EncoderConfig{SampleRate: sampleRate, Channels: 1, Application: gopus.ApplicationVoIP})
	if err != nil {
		tb.Fatal(err)
	}
	pcm := make([]float32, frameSamples)
	out := make([][]byte, n)
	phase := 0.0
	for i := range out {
		for j := range pcm {
			pcm[j] = float32(amp * math.Sin(phase))
			phase += 2 * math.Pi * freq / sampleRate
		}
		buf := make([]byte, maxOpus)
		k, err := enc.Encode(pcm, buf)
		if err != nil {
			tb.Fatal(err)
		}
		out[i] = buf[:k]
	}
	return out
}

// BenchmarkMixFrame is the cost of one 20 ms frame of a room: N speakers
// decoded and mixed, one shared encoding for the listeners who do not
// speak and one mix-minus encoding for each speaker who listens (M of
// them), sent to L listeners. Each op is one frame; 20 ms of real time.
func BenchmarkMixFrame(b *testing.B) {
	for _, c := range []struct{ speakers, minus, listeners, silent int }{
		{1, 0, 1, 0}, {3, 0, 300, 0}, {3, 3, 300, 17}, {5, 5, 300, 15},
	} {
		name := fmt.Sprintf("speakers=%d/mixminus=%d/listeners=%d/silentInputs=%d", c.speakers, c.minus, c.listeners, c.silent)
		b.Run(name, func(b *testing.B) {
			var rank []sfu.SpeakerLevel
			m := newMixer(Config{Speakers: c.speakers}, "TR_mix", func(dst []sfu.SpeakerLevel) []sfu.SpeakerLevel {
				return append(dst, rank...)
			}, nil)
			const frames = 50
			type pub struct {
				src *fakeSource
				pkt [][]byte
			}
			var pubs []pub
			for i := 0; i < c.speakers+c.silent; i++ {
				owner := fmt.Sprintf("PA_%d", i)
				src := &fakeSource{id: fmt.Sprintf("TR_%d", i)}
				if err := m.AddInput(src.id, owner, src, false); err != nil {
					b.Fatal(err)
				}
				if i < c.speakers {
					rank = append(rank, sfu.SpeakerLevel{ID: owner, Level: 0.5})
					pubs = append(pubs, pub{src, toneFrames(b, 300+float64(i)*170, 0.2, frames)})
				} else {
					pubs = append(pubs, pub{src, [][]byte{{0xf8}}}) // a silent speaker: not ranked
				}
			}
			for i := 0; i < c.listeners; i++ {
				owner := fmt.Sprintf("PA_L%d", i)
				if i < c.minus {
					owner = fmt.Sprintf("PA_%d", i)
				}
				m.AddListener(owner).AddSink(&countSink{})
			}
			var hdr rtp.Header
			now := int64(1)
			step := func(i int) {
				now += int64(frameDuration)
				hdr.SequenceNumber, hdr.Timestamp = uint16(i), uint32(i*frameSamples)
				for _, p := range pubs {
					p.src.now = now
					p.src.write(&hdr, p.pkt[i%len(p.pkt)])
				}
				m.mixFrame(uint32(i*frameSamples), now)
			}
			for i := 0; i < 10; i++ { // warm up: buffers, encoders
				step(i)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				step(10 + i)
			}
			b.StopTimer()
			b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N), "us/frame")
			b.ReportMetric(100*float64(b.Elapsed())/float64(b.N)/float64(frameDuration), "%core")
		})
	}
}
