package mixer

import (
	"math"
	"testing"

	"github.com/pion/rtp"
	"github.com/starling-rtc/starling/internal/testutil"
	"github.com/starling-rtc/starling/sfu"
	"github.com/thesyncim/gopus"
)

// decodeSink decodes what an output sends and keeps the headers.
type decodeSink struct {
	t    *testing.T
	dec  *gopus.Decoder
	pcm  []float32
	hdrs []rtp.Header
}

func newDecodeSink(t *testing.T) *decodeSink {
	dec, err := gopus.NewDecoder(gopus.DefaultDecoderConfig(sampleRate, 1))
	if err != nil {
		t.Fatal(err)
	}
	return &decodeSink{t: t, dec: dec}
}

func (d *decodeSink) WriteRTP(h *rtp.Header, p []byte, _ int8) error {
	buf := make([]float32, 5760)
	n, err := d.dec.Decode(p, buf)
	if err != nil {
		d.t.Errorf("output does not decode: %v", err)
		return nil
	}
	d.pcm = append(d.pcm, buf[:n]...)
	d.hdrs = append(d.hdrs, *h)
	return nil
}
func (d *decodeSink) OnSenderReport(int8, uint64, uint32) {}
func (d *decodeSink) Close()                              {}

// amp is the amplitude of frequency f in x (the mixer's 48 kHz).
var amp = testutil.ToneAmp

// rig is a mixer driven frame by frame with one publisher.
type rig struct {
	m    *Mixer
	src  *fakeSource
	out  *decodeSink
	pkts [][]byte
	now  int64
	tick int
}

func newRig(t *testing.T, freq float64) *rig {
	r := &rig{src: &fakeSource{id: "TR_a"}, out: newDecodeSink(t), pkts: toneFrames(t, freq, 0.3, 100)}
	r.m = newMixer(Config{}, "TR_mix", func(dst []sfu.SpeakerLevel) []sfu.SpeakerLevel {
		return append(dst, sfu.SpeakerLevel{ID: "PA_a", Level: 0.8})
	}, nil)
	if err := r.m.AddInput(r.src.id, "PA_a", r.src, false); err != nil {
		t.Fatal(err)
	}
	r.m.AddListener("PA_listener").AddSink(r.out)
	return r
}

// send delivers packet seq (arriving now).
func (r *rig) send(seq int) {
	r.src.now = r.now
	hdr := rtp.Header{SequenceNumber: uint16(seq), Timestamp: uint32(seq * frameSamples)}
	r.src.write(&hdr, r.pkts[seq%len(r.pkts)])
}

// frame advances 20 ms and mixes.
func (r *rig) frame() {
	r.now += int64(frameDuration)
	r.m.mixFrame(uint32(r.tick*frameSamples), r.now)
	r.tick++
}

// TestJitterBuffer: reordered packets play in order without concealment;
// a lost packet is concealed once and playback goes on; a packet arriving
// after its turn is dropped; the output stays one frame per tick with
// contiguous sequence numbers and timestamps, and carries the tone.
func TestJitterBuffer(t *testing.T) {
	r := newRig(t, 440)
	c0 := ReadTotals().Concealed
	for i := 0; i < 30; i++ { // in order
		r.send(i)
		r.frame()
	}
	if c := ReadTotals().Concealed - c0; c != 0 {
		t.Fatalf("in-order packets concealed %d frames", c)
	}
	// Reordered in pairs: 31 before 30, 33 before 32, ...
	for i := 30; i < 50; i += 2 {
		r.send(i + 1)
		r.frame()
		r.send(i)
		r.frame()
	}
	if c := ReadTotals().Concealed - c0; c != 0 {
		t.Fatalf("reordered packets concealed %d frames (the buffer should absorb one frame of reordering)", c)
	}
	// Packet 55 lost; 60 comes three frames late.
	for i := 50; i < 80; i++ {
		switch i {
		case 55:
		case 60:
		case 63:
			r.send(63)
			r.send(60) // long after its turn
		default:
			r.send(i)
		}
		r.frame()
	}
	if c := ReadTotals().Concealed - c0; c < 2 || c > 5 {
		t.Fatalf("a lost and a late packet: %d frames concealed, want 2..5", c)
	}
	r.m.mu.Lock()
	in := r.m.inputs["TR_a"]
	r.m.mu.Unlock()
	in.mu.Lock()
	late := in.late
	in.mu.Unlock()
	if late != 1 {
		t.Fatalf("late packets dropped: %d, want 1", late)
	}
	if d := r.m.Stats().Dropouts; d != 0 {
		t.Fatalf("a lost and a late packet counted as %d dropouts: the voice never stopped", d)
	}
	h := r.out.hdrs
	if len(h) < 70 {
		t.Fatalf("%d frames out for 80 ticks", len(h))
	}
	for i := 1; i < len(h); i++ {
		if h[i].SequenceNumber != h[i-1].SequenceNumber+1 || h[i].Timestamp != h[i-1].Timestamp+frameSamples {
			t.Fatalf("output not contiguous at %d: seq %d->%d ts %d->%d", i, h[i-1].SequenceNumber, h[i].SequenceNumber, h[i-1].Timestamp, h[i].Timestamp)
		}
	}
	if !h[0].Marker || h[1].Marker {
		t.Fatalf("the first frame of a talkspurt carries the marker, the others not")
	}
	if a := amp(r.out.pcm[len(r.out.pcm)-24000:], 440); a < 0.15 {
		t.Fatalf("the tone is %.3f in the output, want about 0.3", a)
	}
}

// TestSilenceAndMute: an input that stops sending goes quiet after a few
// concealed frames (one dropout) and nothing is sent; a muted input is
// ignored.
func TestSilenceAndMute(t *testing.T) {
	r := newRig(t, 440)
	for i := 0; i < 20; i++ {
		r.send(i)
		r.frame()
	}
	n := len(r.out.hdrs)
	for i := 0; i < 20; i++ { // the publisher stops (DTX, mute)
		r.frame()
	}
	if extra := len(r.out.hdrs) - n; extra > concealFrames+1 {
		t.Fatalf("%d frames sent after the input stopped, want at most %d (concealment)", extra, concealFrames+1)
	}
	if d := r.m.Stats().Dropouts; d != 1 {
		t.Fatalf("an input that stopped sending: %d dropouts, want 1", d)
	}
	n = len(r.out.hdrs)
	r.m.SetInputMuted("TR_a", true)
	for i := 40; i < 60; i++ {
		r.send(i)
		r.frame()
	}
	if len(r.out.hdrs) != n {
		t.Fatalf("a muted input was mixed: %d frames", len(r.out.hdrs)-n)
	}
	r.m.SetInputMuted("TR_a", false)
	for i := 60; i < 70; i++ {
		r.send(i)
		r.frame()
	}
	if len(r.out.hdrs) == n {
		t.Fatal("an unmuted input was not mixed again")
	}
	if !r.out.hdrs[n].Marker {
		t.Fatal("a new talkspurt does not start with the marker")
	}
}

// TestLimiter: a sum far past full scale is turned down, never wrapped.
func TestLimiter(t *testing.T) {
	var l limiter
	x := make([]float32, frameSamples)
	var peak, step float64
	prev := float32(0)
	for f := 0; f < 50; f++ {
		for i := range x {
			n := f*frameSamples + i
			x[i] = float32(3 * math.Sin(2*math.Pi*440*float64(n)/sampleRate))
		}
		l.process(x)
		for _, v := range x {
			peak = math.Max(peak, math.Abs(float64(v)))
			step = math.Max(step, math.Abs(float64(v-prev)))
			prev = v
		}
	}
	if peak > 1 || step > 0.2 {
		t.Fatalf("limited output: peak %.3f, largest step %.3f", peak, step)
	}
	if a := amp(x, 440); a < 0.8 {
		t.Fatalf("limited tone at %.3f, want close to the ceiling", a)
	}
	// Quiet again: the gain comes back.
	for f := 0; f < 100; f++ {
		for i := range x {
			x[i] = float32(0.3 * math.Sin(2*math.Pi*440*float64(f*frameSamples+i)/sampleRate))
		}
		l.process(x)
	}
	if a := amp(x, 440); a < 0.28 {
		t.Fatalf("after the peak the gain did not recover: %.3f, want 0.3", a)
	}
}

// TestLongPackets: a publisher sending 60 ms Opus packets is played in
// full: three frames per packet, nothing concealed.
func TestLongPackets(t *testing.T) {
	r := newRig(t, 440)
	enc, err := gopus.NewEncoder(gopus.EncoderConfig{SampleRate: sampleRate, Channels: 1, Application: gopus.ApplicationVoIP})
	if err != nil {
		t.Fatal(err)
	}
	if err := enc.SetFrameSize(3 * frameSamples); err != nil {
		t.Fatal(err)
	}
	pcm := make([]float32, 3*frameSamples)
	phase := 0.0
	r.pkts = r.pkts[:0]
	for i := 0; i < 40; i++ {
		for j := range pcm {
			pcm[j] = float32(0.3 * math.Sin(phase))
			phase += 2 * math.Pi * 440 / sampleRate
		}
		buf := make([]byte, maxOpus)
		n, err := enc.Encode(pcm, buf)
		if err != nil {
			t.Fatal(err)
		}
		r.pkts = append(r.pkts, buf[:n])
	}
	c0 := ReadTotals().Concealed
	for i := 0; i < 40; i++ {
		r.send(i)
		for k := 0; k < 3; k++ {
			r.frame()
		}
	}
	if c := ReadTotals().Concealed - c0; c != 0 {
		t.Fatalf("%d frames concealed with 60 ms packets", c)
	}
	if n := len(r.out.hdrs); n < 110 {
		t.Fatalf("%d frames out for 120 ticks of 60 ms packets", n)
	}
	if a := amp(r.out.pcm[len(r.out.pcm)-24000:], 440); a < 0.15 {
		t.Fatalf("the tone is %.3f in the output, want about 0.3", a)
	}
}

// TestInBandFEC: when a packet is lost and the next one carries in-band
// FEC (LBRR, as browsers send with useinbandfec=1), the lost frame is
// rebuilt from it rather than concealed by PLC alone.
func TestInBandFEC(t *testing.T) {
	r := newRig(t, 300)
	enc, err := gopus.NewEncoder(gopus.EncoderConfig{SampleRate: sampleRate, Channels: 1, Application: gopus.ApplicationVoIP})
	if err != nil {
		t.Fatal(err)
	}
	_ = enc.SetBitrate(24000)
	enc.SetFEC(true)
	_ = enc.SetPacketLoss(20)
	pcm := make([]float32, frameSamples)
	phase := 0.0
	r.pkts = r.pkts[:0]
	for i := 0; i < 60; i++ {
		for j := range pcm {
			pcm[j] = float32(0.3*math.Sin(phase) + 0.1*math.Sin(3.7*phase))
			phase += 2 * math.Pi * 300 / sampleRate
		}
		buf := make([]byte, maxOpus)
		n, err := enc.Encode(pcm, buf)
		if err != nil {
			t.Fatal(err)
		}
		r.pkts = append(r.pkts, buf[:n])
	}
	if !gopus.PacketHasLBRR(r.pkts[11]) || !gopus.PacketHasLBRR(r.pkts[21]) {
		t.Fatal("the test's encoder sent no in-band FEC")
	}
	f0 := ReadTotals().FEC
	for i := 0; i < 60; i++ {
		if i != 10 && i != 20 {
			r.send(i)
		}
		r.frame()
	}
	if got := ReadTotals().FEC - f0; got != 2 {
		t.Fatalf("%d lost frames rebuilt from in-band FEC, want 2", got)
	}
}
