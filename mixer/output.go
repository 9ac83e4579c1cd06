package mixer

import (
	"sync"
	"sync/atomic"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
	"github.com/starling-rtc/starling/sfu"
)

// OpusCodec is the mix's codec as subscribers negotiate it.
var OpusCodec = webrtc.RTPCodecParameters{
	RTPCodecCapability: webrtc.RTPCodecCapability{
		MimeType: webrtc.MimeTypeOpus, ClockRate: sampleRate, Channels: 2,
		SDPFmtpLine: "minptime=10;useinbandfec=1",
	},
	PayloadType: 111,
}

// Output is one listener's mix: an sfu.Source that down tracks (and a
// recorder) read like a published audio track. Every output of a room has
// the mix's track id and the room's timestamps; each keeps its own
// sequence numbers, so a listener moving between the shared mix and its
// own mix-minus sees one continuous stream.
type Output struct {
	m        *Mixer
	listener string // participant id; "" = the shared mix for a recorder

	mu    sync.Mutex
	sinks atomic.Pointer[[]sfu.Sink]
	now   atomic.Int64

	// Owned by the mixer goroutine.
	hdr     rtp.Header
	seq     uint16
	talking bool // sent the previous frame: the next needs no marker
}

func newOutput(m *Mixer, listener string) *Output {
	o := &Output{m: m, listener: listener, seq: uint16(randUint32())}
	empty := []sfu.Sink{}
	o.sinks.Store(&empty)
	return o
}

// ID is the mix's track id.
func (o *Output) ID() string { return o.m.id }

// Listener is the participant this output is for ("" = shared, for recording).
func (o *Output) Listener() string { return o.listener }

// Kind is audio.
func (o *Output) Kind() webrtc.RTPCodecType { return webrtc.RTPCodecTypeAudio }

// Codec is Opus, 48 kHz.
func (o *Output) Codec() webrtc.RTPCodecParameters { return OpusCodec }

// AddSink starts sending the mix to s.
func (o *Output) AddSink(s sfu.Sink) {
	o.mu.Lock()
	defer o.mu.Unlock()
	next := sfu.WithSink(*o.sinks.Load(), s)
	o.sinks.Store(&next)
}

// RemoveSink stops sending to s; it does not close s.
func (o *Output) RemoveSink(s sfu.Sink) {
	o.mu.Lock()
	defer o.mu.Unlock()
	next := sfu.WithoutSink(*o.sinks.Load(), s)
	o.sinks.Store(&next)
}

// RequestKeyframe does nothing: audio has none.
func (o *Output) RequestKeyframe(int8) {}

// Layers is the single layer.
func (o *Output) Layers() uint8 { return 1 }

// LiveLayers is the single layer.
func (o *Output) LiveLayers() uint8 { return 1 }

// PacketTime is when the frame being sent was mixed.
func (o *Output) PacketTime() int64 { return o.now.Load() }

// send hands one encoded frame to the sinks; mixer goroutine only.
func (o *Output) send(payload []byte, ts uint32, now int64) {
	o.now.Store(now)
	o.hdr = rtp.Header{Version: 2, PayloadType: uint8(OpusCodec.PayloadType), SequenceNumber: o.seq,
		Timestamp: ts, SSRC: o.m.ssrc, Marker: !o.talking}
	o.seq++
	o.talking = true
	for _, s := range *o.sinks.Load() {
		_ = s.WriteRTP(&o.hdr, payload, 0)
	}
}

// silent notes a frame with nothing to send (nobody else speaks): the next
// frame starts a talkspurt, as after DTX.
func (o *Output) silent() { o.talking = false }

// close closes the sinks still attached (the room has normally removed them).
func (o *Output) close() {
	o.mu.Lock()
	sinks := *o.sinks.Load()
	empty := []sfu.Sink{}
	o.sinks.Store(&empty)
	o.mu.Unlock()
	for _, s := range sinks {
		s.Close()
	}
}
